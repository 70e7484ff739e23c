//! Pushes this instance's metrics to a Prometheus Pushgateway, with the app's own async
//! HTTP client: on an interval, after each training, and a delete of the group at shutdown.
//! A slow or dead gateway never delays a prediction or a training: pushes run in their own
//! task with a short timeout, and failures are counted and logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::metrics::METRICS;
use crate::config::PushSettings;

/// Longest a single push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// The `job` grouping label.
pub const JOB: &str = "sommelier";

/// Handle to ask for an immediate push.
#[derive(Clone, Default)]
pub struct PushTrigger(Arc<Notify>);

impl PushTrigger {
    pub fn push_now(&self) {
        self.0.notify_one();
    }
}

/// Pushes metrics for one instance.
pub struct Pusher {
    client: reqwest::Client,
    group_url: String,
    settings: PushSettings,
}

impl Pusher {
    pub fn new(settings: PushSettings, instance: &str) -> Result<Pusher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let group_url = group_url(&settings.url, instance);
        Ok(Pusher {
            client,
            group_url,
            settings,
        })
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.username {
            Some(user) => request.basic_auth(user, self.settings.password.as_deref()),
            None => request,
        }
    }

    /// Replaces this instance's group with the current metrics.
    pub async fn push(&self, body: String) -> bool {
        let request = self
            .client
            .put(&self.group_url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(body);
        settled("push", self.authorize(request).send().await)
    }

    /// Deletes this instance's group (graceful shutdown: the gateway never forgets).
    pub async fn delete(&self) -> bool {
        let request = self.client.delete(&self.group_url);
        settled("delete", self.authorize(request).send().await)
    }

    /// Deletes the groups of other instances of this job that have not been pushed for
    /// `stale_after`: instances stopped without a signal (killed, crashed, scaled in by the
    /// platform) left them, and the Pushgateway keeps a group until it is deleted. Returns
    /// how many were deleted; a failure is logged and retried at the next sweep.
    pub async fn sweep_stale_groups(&self, stale_after: Duration) -> usize {
        let listing = self
            .client
            .get(format!("{}/api/v1/metrics", self.settings.url));
        let groups = match self.authorize(listing).send().await {
            Ok(response) if response.status().is_success() => response.bytes().await,
            Ok(response) => {
                tracing::warn!(status = %response.status(), "pushgateway refused the group listing");
                return 0;
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "listing the pushgateway groups failed");
                return 0;
            }
        };
        let Ok(groups) = groups else { return 0 };
        let now = super::metrics::unix_now();
        let mut deleted = 0;
        for instance in stale_instances(&groups, now, stale_after) {
            let url = group_url(&self.settings.url, &instance);
            if url == self.group_url {
                continue;
            }
            let request = self.client.delete(url);
            if settled(
                "delete of a stale group",
                self.authorize(request).send().await,
            ) {
                tracing::info!(%instance, "deleted the pushgateway group of a stopped instance");
                deleted += 1;
            }
        }
        deleted
    }

    /// Pushes on the interval and whenever `trigger` fires, until `shutdown` resolves; then
    /// deletes the group.
    pub async fn run(
        self,
        trigger: PushTrigger,
        snapshot: impl Fn() -> String + Send + 'static,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let mut interval = tokio::time::interval(self.settings.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep: Option<tokio::time::Instant> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = trigger.0.notified() => {}
                _ = &mut shutdown => break,
            }
            self.push(snapshot()).await;
            if let Some(stale_after) = self.settings.stale_group_after {
                // Every half of the age, at most every ten minutes and at least every push.
                let every = (stale_after / 2).min(SWEEP_AT_MOST_EVERY);
                if last_sweep.is_none_or(|at| at.elapsed() >= every) {
                    last_sweep = Some(tokio::time::Instant::now());
                    self.sweep_stale_groups(stale_after).await;
                }
            }
        }
        self.delete().await;
    }
}

/// The URL of an instance's group of [`JOB`] at the gateway `base`.
fn group_url(base: &str, instance: &str) -> String {
    format!(
        "{base}/metrics/job/{JOB}/instance/{}",
        url_path_segment(instance)
    )
}

/// The longest time between two sweeps of stale groups.
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(600);

/// The instances of [`JOB`] in a Pushgateway's group listing (`GET /api/v1/metrics`) whose
/// last push is older than `stale_after` at `now` (Unix seconds). A listing that cannot be
/// read names none.
fn stale_instances(listing: &[u8], now: f64, stale_after: Duration) -> Vec<String> {
    let Ok(listing) = serde_json::from_slice::<serde_json::Value>(listing) else {
        return Vec::new();
    };
    let groups = listing["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    groups
        .iter()
        .filter(|group| group["labels"]["job"] == JOB)
        .filter_map(|group| {
            let instance = group["labels"]["instance"].as_str()?;
            let pushed = group["push_time_seconds"]["metrics"][0]["value"]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            (pushed > 0.0 && now - pushed > stale_after.as_secs_f64()).then(|| instance.to_string())
        })
        .collect()
}

/// The `job` of the group that says when a training last succeeded, on whichever instance.
/// No instance deletes it: an instance's own group goes when it stops, and with it the time
/// of its trainings, so once the instance that trained has scaled in only this group still
/// tells the staleness alert when the last training was.
pub const TRAINING_JOB: &str = "sommelier_training";

/// Longest a push of a shared group may take.
const GROUP_PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Replaces the group of `job`, which has no instance label, with `text`. A failure is
/// counted and logged, never fatal.
pub async fn push_group(settings: &PushSettings, job: &str, text: String) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(GROUP_PUSH_TIMEOUT)
        .build()
    else {
        return false;
    };
    let url = format!("{}/metrics/job/{}", settings.url, url_path_segment(job));
    let mut request = client
        .put(url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(text);
    if let Some(user) = &settings.username {
        request = request.basic_auth(user, settings.password.as_deref());
    }
    settled(&format!("push of the {job} group"), request.send().await)
}

/// Whether a request to the gateway succeeded; a refusal or a failure is counted and logged.
fn settled(action: &str, result: Result<reqwest::Response, reqwest::Error>) -> bool {
    match result {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            METRICS.push_failures.inc();
            tracing::warn!(status = %response.status(), "pushgateway {action} refused");
            false
        }
        Err(error) => {
            METRICS.push_failures.inc();
            tracing::warn!(error = %error.without_url(), "pushgateway {action} failed");
            false
        }
    }
}

/// The last successful training's time as Prometheus text, for [`TRAINING_JOB`]'s group.
pub fn training_success_text(finished_unix: f64) -> String {
    use super::metrics::{LAST_SUCCESS_HELP, LAST_SUCCESS_NAME};
    format!(
        "# HELP {LAST_SUCCESS_NAME} {LAST_SUCCESS_HELP}\n# TYPE {LAST_SUCCESS_NAME} gauge\n{LAST_SUCCESS_NAME} {finished_unix}\n"
    )
}

/// Escapes an instance id for a URL path segment (the Pushgateway also accepts base64, but
/// instance ids are host names or hex ids in practice).
fn url_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_escaped() {
        assert_eq!(url_path_segment("web-1.a_b"), "web-1.a_b");
        assert_eq!(url_path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn only_this_jobs_groups_older_than_the_age_are_stale() {
        let group = |job: &str, instance: Option<&str>, pushed: &str| {
            let mut labels = serde_json::json!({"job": job});
            if let Some(instance) = instance {
                labels["instance"] = instance.into();
            }
            serde_json::json!({
                "labels": labels,
                "push_time_seconds": {"metrics": [{"value": pushed}]},
            })
        };
        let listing = serde_json::json!({"status": "success", "data": [
            group(JOB, Some("gone"), "1000"),
            group(JOB, Some("alive"), "4500"),
            group(JOB, Some("never-pushed"), "0"),
            group(TRAINING_JOB, None, "1000"),
            group("other", Some("gone-too"), "1000"),
        ]});
        let bytes = serde_json::to_vec(&listing).unwrap();
        let stale = stale_instances(&bytes, 5000.0, Duration::from_secs(3600));
        assert_eq!(stale, vec!["gone".to_string()]);
        assert!(stale_instances(b"not json", 5000.0, Duration::from_secs(1)).is_empty());
    }
}
