//! Azurite for the blob tests: started by the tests themselves on a free port, with its data in
//! a temporary directory, optionally over HTTPS with OAuth checking; stopped on drop.
//! Azurite comes from `bash scripts/install-tools.sh node`; the tests that use it are ignored
//! in a plain `cargo test` and run by `scripts/test` (`-- --include-ignored`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo_root};

/// The connection string of Azurite's well-known development account.
pub const DEV_STORAGE: &str = "UseDevelopmentStorage=true";

/// TLS material for Azurite over HTTPS: a test CA and a server certificate for 127.0.0.1.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    fn generate(dir: &Path) -> Tls {
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command line tool");
            assert!(
                output.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sommelier test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extension file");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// An Azurite blob service on a free port with its data in a temporary directory; killed on
/// drop, restartable on the same port with the same data.
pub struct Azurite {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    pub tls: Option<Tls>,
}

impl Azurite {
    fn binary() -> PathBuf {
        let path = repo_root().join(".tools/node/node_modules/.bin/azurite-blob");
        assert!(
            path.exists(),
            "Azurite is not installed ({} is missing): run `bash scripts/install-tools.sh node`",
            path.display()
        );
        path
    }

    pub fn start() -> Azurite {
        Self::launch(false)
    }

    /// HTTPS with OAuth checking (`--oauth basic`): bearer tokens' audience, issuer and expiry.
    pub fn start_https_oauth() -> Azurite {
        Self::launch(true)
    }

    fn launch(https: bool) -> Azurite {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tls = https.then(|| {
            let tls_dir = dir.path().join("tls");
            std::fs::create_dir_all(&tls_dir).expect("tls directory");
            Tls::generate(&tls_dir)
        });
        let mut azurite = Azurite {
            child: None,
            port: free_port(),
            dir,
            tls,
        };
        azurite.run();
        azurite
    }

    fn run(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("azurite.log"))
            .expect("log file");
        let mut command = Command::new(Self::binary());
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .arg("--location")
            .arg(&data)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if let Some(tls) = &self.tls {
            command
                .args(["--oauth", "basic", "--cert"])
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        let mut child = command.spawn().expect("spawn azurite-blob");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("Azurite exited ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Azurite not listening after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    /// Stops Azurite as a service manager would: SIGTERM, then SIGKILL if it is still there
    /// after 6 s (it waits for open connections; by then its 5-second metadata autosave has
    /// run, so no acknowledged write is lost, as on the real service).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills Azurite at once (SIGKILL), as a crash or a lost network would stop it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Azurite again on the same port and data after [`Azurite::kill`].
    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.run();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn container_url(&self, container: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}/devstoreaccount1/{container}",
            self.port
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}
