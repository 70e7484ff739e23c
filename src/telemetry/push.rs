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
        let group_url = format!(
            "{}/metrics/job/{JOB}/instance/{}",
            settings.url,
            url_path_segment(instance)
        );
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
        self.finish("push", self.authorize(request).send().await)
    }

    /// Deletes this instance's group (graceful shutdown: the gateway never forgets).
    pub async fn delete(&self) -> bool {
        let request = self.client.delete(&self.group_url);
        self.finish("delete", self.authorize(request).send().await)
    }

    fn finish(&self, action: &str, result: Result<reqwest::Response, reqwest::Error>) -> bool {
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = trigger.0.notified() => {}
                _ = &mut shutdown => break,
            }
            self.push(snapshot()).await;
        }
        self.delete().await;
    }
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
    match request.send().await {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            METRICS.push_failures.inc();
            tracing::warn!(status = %response.status(), job, "pushgateway refused a shared group");
            false
        }
        Err(error) => {
            METRICS.push_failures.inc();
            tracing::warn!(error = %error.without_url(), job, "pushing a shared group failed");
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
}
