//! Figures for hostile input, printed (never asserted), against the real server binary:
//!   1. server CPU per MB of body and peak memory per body, for each expensive request shape
//!      (a fresh server per shape, so its peak resident memory is that shape's);
//!   2. p50/p99 of normal predictions while 4 hostile clients send the worst shapes, and how
//!      many hostile requests the memory budget turned away.
//!
//! Usage: cargo run --release --example hostile -- [path/to/sommelier] (default: the release
//! binary next to this example).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sommelier::model::features::FEATURE_NAMES as FEATURES;

const MB: usize = 1024 * 1024;
const VALUES: [f64; 11] = [
    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn wine() -> Value {
    Value::Object(
        FEATURES
            .iter()
            .zip(VALUES)
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect(),
    )
}

/// One request shape: route, content type, body.
struct Shape {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

fn fill(prefix: &str, unit: &str, suffix: &str, size: usize) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    while body.len() + unit.len() + suffix.len() < size {
        body.extend_from_slice(unit.as_bytes());
    }
    body.extend_from_slice(suffix.as_bytes());
    body
}

fn shapes() -> Vec<Shape> {
    let size = 16 * MB - 1024;
    let mut columns = serde_json::Map::new();
    for (name, value) in FEATURES.iter().zip(VALUES) {
        columns.insert(name.to_string(), json!([value]));
    }
    columns.insert("x".into(), json!(vec![0; 1000]));
    for i in 0..100_000 {
        columns.insert(format!("k{i}"), json!(0));
    }
    let mut wide = wine();
    for i in 0..40_000 {
        wide[format!("k{i}")] = json!(0);
    }
    let row = serde_json::to_string(&wine()).unwrap_or_default();
    let rows: Vec<Value> = (0..10_000).map(|_| wine()).collect();
    let csv_header = FEATURES.join(",");
    let csv_row = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4\n";
    vec![
        Shape {
            name: "columns + 1e5 unknown keys",
            path: "/api/invocations",
            content_type: "application/json",
            body: serde_json::to_vec(&json!({ "inputs": columns })).unwrap_or_default(),
        },
        Shape {
            name: "one instance, 4e4 unknown keys",
            path: "/api/predict",
            content_type: "application/json",
            body: serde_json::to_vec(&json!({ "instances": [wide] })).unwrap_or_default(),
        },
        Shape {
            name: "10,000 valid rows (predicted)",
            path: "/api/invocations",
            content_type: "application/json",
            body: serde_json::to_vec(&json!({ "dataframe_records": rows })).unwrap_or_default(),
        },
        Shape {
            name: "16 MB array of zeros",
            path: "/api/invocations",
            content_type: "application/json",
            body: fill("[0", ",0", "]", size),
        },
        Shape {
            name: "16 MB instances of {}",
            path: "/api/predict",
            content_type: "application/json",
            body: fill("{\"instances\": [{}", ",{}", "]}", size),
        },
        Shape {
            name: "16 MB records (past the rows cap)",
            path: "/api/invocations",
            content_type: "application/json",
            body: fill(
                &format!("{{\"dataframe_records\": [{row}"),
                &format!(",{row}"),
                "]}",
                size,
            ),
        },
        Shape {
            name: "16 MB nesting in an ignored field",
            path: "/api/predict",
            content_type: "application/json",
            body: {
                let depth = size / 2 - 16;
                format!("{{\"x\": {}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            },
        },
        Shape {
            name: "16 MB numeric string",
            path: "/api/predict",
            content_type: "application/json",
            body: fill("{\"pH\": \"0.", "1", "\"}", size),
        },
        Shape {
            name: "16 MB CSV",
            path: "/api/invocations",
            content_type: "text/csv",
            body: fill(&format!("{csv_header}\n"), csv_row, "", size),
        },
        Shape {
            name: "16 MB form",
            path: "/api/predict",
            content_type: "application/x-www-form-urlencoded",
            body: fill("", "k=1&", "", size),
        },
    ]
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &Path, store: &Path, env: &[(&str, &str)]) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("SOMMELIER_STORE", store)
            .env("RUST_LOG", "error")
            .env_remove("SOMMELIER_PUSHGATEWAY_URL")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let server = Server {
            child: command.spawn()?,
            port,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err("the server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// User plus system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is parenthesised and may hold spaces.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }

    /// (resident now, peak resident) in MB.
    fn memory_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(client: &reqwest::Client, server: &Server, shape: &Shape) -> Result<u16> {
    let response = client
        .post(server.url(shape.path))
        .header("content-type", shape.content_type)
        .body(shape.body.clone())
        .send()
        .await?;
    let status = response.status().as_u16();
    let _ = response.bytes().await?;
    Ok(status)
}

async fn predict_once(client: &reqwest::Client, server: &Server) -> Result<Duration> {
    let started = Instant::now();
    let response = client
        .post(server.url("/api/predict"))
        .json(&wine())
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("normal prediction answered {}", response.status()).into());
    }
    let _ = response.bytes().await?;
    Ok(started.elapsed())
}

/// Waits until the server answers predictions (the model loads in the background).
async fn ready(client: &reqwest::Client, server: &Server) -> Result<()> {
    let started = Instant::now();
    while predict_once(client, server).await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("no model after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/sommelier"));
    let work = std::env::temp_dir().join(format!("sommelier-hostile-{}", std::process::id()));
    let store = work.join("store");
    std::fs::create_dir_all(&work)?;
    let trained = Command::new(&binary)
        .args(["train", "--store"])
        .arg(&store)
        .env_remove("SOMMELIER_TRAINING_DATA")
        .output()?;
    if !trained.status.success() {
        return Err("sommelier train failed".into());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let shapes = shapes();

    println!("== 1. server CPU and peak memory per request shape (3 requests each, fresh server)");
    println!(
        "{:<36} {:>8} {:>7} {:>10} {:>12} {:>12}",
        "shape", "body MB", "status", "CPU ms/MB", "peak +MB", "peak/body"
    );
    for shape in &shapes {
        let server = Server::start(&binary, &store, &[])?;
        ready(&client, &server).await?;
        let (resident, _) = server.memory_mb();
        let cpu = server.cpu_seconds();
        let mut status = 0;
        for _ in 0..3 {
            status = send(&client, &server, shape).await?;
        }
        let cpu_ms = (server.cpu_seconds() - cpu) * 1000.0 / 3.0;
        let body_mb = shape.body.len() as f64 / MB as f64;
        let (_, peak) = server.memory_mb();
        println!(
            "{:<36} {:>8.2} {:>7} {:>10.1} {:>12.1} {:>12.2}",
            shape.name,
            body_mb,
            status,
            cpu_ms / body_mb,
            peak - resident,
            (peak - resident) / body_mb
        );
    }

    println!();
    println!("== 2. normal predictions while 4 hostile clients send the worst shapes");
    let server = Arc::new(Server::start(&binary, &store, &[])?);
    ready(&client, &server).await?;
    let (resident, _) = server.memory_mb();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let shapes = Arc::new(shapes);
    let mut attackers = Vec::new();
    for attacker in 0..4 {
        let (stop, refused, sent, shapes, server, client) = (
            stop.clone(),
            refused.clone(),
            sent.clone(),
            shapes.clone(),
            server.clone(),
            client.clone(),
        );
        attackers.push(tokio::spawn(async move {
            let mut i = attacker;
            while !stop.load(Ordering::Relaxed) {
                let shape = &shapes[i % shapes.len()];
                if let Ok(503) = send(&client, &server, shape).await {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The normal client has its own thread, runtime and connection, so that what it measures
    // is the server's answer time, not its turn among the attackers' tasks in this process.
    let normal_server = server.clone();
    let mut latencies = std::thread::spawn(move || -> Result<Vec<Duration>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                latencies.push(predict_once(&client, &normal_server).await?);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(latencies)
        })
    })
    .join()
    .map_err(|_| "the normal client panicked")??;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = attacker.await;
    }
    latencies.sort();
    let (_, peak) = server.memory_mb();
    println!(
        "normal predictions: {} in 20 s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "hostile requests: {} sent, {} refused with 503 by the memory budget",
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    println!(
        "server memory: {resident:.1} MB resident before the attack, {peak:.1} MB peak during it"
    );
    println!();
    println!("== 3. the memory budget (defaults)");
    println!(
        "SOMMELIER_MAX_BUFFERED_BYTES 128 MiB, SOMMELIER_MAX_LARGE_REQUESTS 4 (bodies > 1 MiB):"
    );
    println!(
        "worst burst ~ 128 MiB buffered x the peak/body ratio above, plus {resident:.0} MB resident"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
