"""Checks of monitoring/ (Prometheus configuration, alert rules, Grafana dashboards), and the
end-to-end test: a real sommelier pushing to a real Pushgateway scraped by a real Prometheus
with the project's own configuration, every alert rule loaded and every dashboard query run.

Static checks need promtool (Debian package `prometheus`). The end-to-end tests need
`target/debug/sommelier` (`cargo build`), `prometheus` and `prometheus-pushgateway`; they fail,
never skip, when one is missing.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
SOMMELIER = REPO / "target" / "debug" / "sommelier"

FEATURES = [
    "fixed_acidity", "volatile_acidity", "citric_acid", "residual_sugar", "chlorides",
    "free_sulfur_dioxide", "total_sulfur_dioxide", "density", "pH", "sulphates", "alcohol",
]

# The metrics the application exports (see the monitoring issue), by type.
COUNTERS = {
    "sommelier_http_requests_total", "sommelier_predictions_total",
    "sommelier_feature_out_of_range_total", "sommelier_feature_values_observed_total",
    "sommelier_cold_starts_total", "sommelier_training_runs_total",
    "sommelier_pushgateway_push_failures_total", "sommelier_mlflow_failures_total",
    "sommelier_store_errors_total", "sommelier_store_auth_failures_total",
    "sommelier_prediction_log_rows_total", "sommelier_prediction_log_dropped_total",
    "sommelier_prediction_log_write_failures_total", "sommelier_feedback_labels_total",
}
# Pushed by the feedback join under job="sommelier_feedback" (see src/feedback/metrics.rs).
FEEDBACK_GAUGES = {
    "sommelier_feedback_rmse", "sommelier_feedback_mae", "sommelier_feedback_labelled_rows",
    "sommelier_feedback_holdout_rmse", "sommelier_feedback_unmatched_labels",
    "sommelier_feedback_last_join_timestamp_seconds",
}
GAUGES = {
    "sommelier_http_requests_in_flight", "sommelier_feature_drift_psi", "sommelier_model_info",
    "sommelier_model_load_duration_seconds", "sommelier_model_created_timestamp_seconds",
    "sommelier_process_start_time_seconds", "sommelier_training_rows", "sommelier_model_rmse",
    "sommelier_model_mae", "sommelier_model_r2",
    "sommelier_last_successful_training_timestamp_seconds", "sommelier_serving_degraded",
    "sommelier_training_label_shift", "sommelier_training_held_for_label_shift",
}
HISTOGRAMS = {
    "sommelier_http_request_duration_seconds", "sommelier_prediction_batch_size",
    "sommelier_predicted_quality", "sommelier_training_duration_seconds",
}
# Added by the Pushgateway to every group.
GATEWAY = {"push_time_seconds", "push_failure_time_seconds"}
# The alerting pipeline watching itself: Prometheus and Alertmanager's own metrics.
SELF_MONITORING = {
    "up", "alertmanager_notifications_failed_total", "prometheus_notifications_alertmanagers_discovered",
    "prometheus_notifications_errors_total",
}
KNOWN_METRICS = (
    COUNTERS | GAUGES | FEEDBACK_GAUGES | GATEWAY | SELF_MONITORING
    | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

# What Grafana substitutes in a query before sending it, and what the tests use instead.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "10m"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}


# ---------------------------------------------------------------- helpers

def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def alerts() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def panels(dashboard: dict) -> list[dict]:
    """Every panel, including the ones nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title + refId, PromQL with Grafana's variables substituted)."""
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                out.append((path.name, f'{panel["title"]} [{target["refId"]}]', expr))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small parser: enough for our queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, timeout: float = 30, auth: tuple[str, str] | None = None):
    """Returns (status, text). Never raises for HTTP error statuses."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


# ---------------------------------------------------------------- Prometheus configuration and rules

@pytest.fixture(scope="module")
def promtool(tool):
    return tool("promtool")


def test_prometheus_config_is_valid(promtool, tmp_path):
    """The configuration as deployed: rule files beside it, the gateway's password in a file."""
    shutil.copytree(PROMETHEUS_DIR, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "pushgateway_password").write_text("not-the-real-one\n")
    result = run([promtool, "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_scrapes_gateway_with_honor_labels_and_itself():
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["pushgateway"]
    assert gateway["honor_labels"] is True, "the instances' job/instance labels must be kept"
    assert "password_file" in gateway["basic_auth"], "the password lives in a file, not in the config"
    assert "password" not in gateway["basic_auth"]
    assert "prometheus" in jobs
    assert config["rule_files"] == ["rules/*.yml"]
    # Alerts go to the Alertmanager on the same VM's loopback, which is scraped too.
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]
    assert jobs["alertmanager"]["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_alert_rules_are_valid(promtool):
    assert RULES, "no rule files"
    result = run([promtool, "check", "rules", *map(str, RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass(promtool):
    assert RULE_TESTS, "no rule unit tests"
    result = run([promtool, "test", "rules", *map(str, RULE_TESTS)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented():
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in alerts():
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert annotations.get(key, "").strip(), f"{rule['alert']}: no {key}"
        assert annotations.get("runbook") or annotations.get("runbook_url"), f"{rule['alert']}: no runbook"
        # The Watchdog is the heartbeat, not an alert for a person.
        expected = {"none"} if rule["alert"] == "Watchdog" else {"warning", "critical"}
        assert rule.get("labels", {}).get("severity") in expected, rule["alert"]


def test_the_issue_alerts_exist():
    expressions = " ".join(rule["expr"] for rule in alerts())
    for metric in (
        "sommelier_last_successful_training_timestamp_seconds",  # no successful training for too long
        'status=~"5.."',  # serving error rate
        "sommelier_http_request_duration_seconds_bucket",  # p99 latency
        "sommelier_feature_drift_psi",  # drift
        "sommelier_feature_out_of_range_total",  # out-of-range rate
        "push_time_seconds",  # instances that stopped pushing
        'outcome="failed"',  # training failures
    ):
        assert metric in expressions, f"no alert uses {metric}"


def test_every_alert_has_firing_and_quiet_unit_tests():
    firing, quiet = set(), set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    for rule in alerts():
        assert rule["alert"] in firing, f"{rule['alert']}: no unit test where it fires"
        if rule["alert"] != "Watchdog":  # always firing, by design
            assert rule["alert"] in quiet, f"{rule['alert']}: no unit test where it stays quiet"


def test_alert_rules_use_only_exported_metrics():
    for rule in alerts():
        unknown = metric_names(rule["expr"]) - KNOWN_METRICS
        assert not unknown, f"{rule['alert']} uses metrics nobody exports: {unknown}"


# ---------------------------------------------------------------- Grafana

def test_metric_name_parser():
    expr = ('sum by (le) (rate(a_bucket{function=~"predict|x"}[5m])) / ignoring (f) group_left '
            'sum(b_total offset 5m) or on () vector(0) and c > 0.2 * 1e3')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_dashboards_parse_and_have_unique_panel_ids():
    assert {p.name for p in DASHBOARDS} >= {"serving.json", "model.json"}
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        assert dashboard["title"]
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel.get("targets"), f"{path.name}: panel {panel['title']!r} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{path.name}: {panel['title']!r}"
            assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()


def test_dashboard_queries_pass_promtool(promtool, tmp_path):
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": expr}
        for i, (_, _, expr) in enumerate(panel_queries())
    ]
    assert rules
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    result = run([promtool, "check", "rules", str(path)])
    if result.returncode != 0:
        listing = "\n".join(f"{i}: {d} / {p}: {e}" for i, (d, p, e) in enumerate(panel_queries()))
        pytest.fail(f"{result.stdout}{result.stderr}\nqueries:\n{listing}")


def test_dashboards_use_only_exported_metrics():
    for dashboard, panel, expr in panel_queries():
        names = metric_names(expr)
        assert names, f"{dashboard} / {panel}: no metric in {expr!r}"
        unknown = names - KNOWN_METRICS
        assert not unknown, f"{dashboard} / {panel} uses metrics nobody exports: {unknown}"


def test_dashboards_sum_across_instances():
    """Each instance pushes its own group: a raw selector of a counter would show one line per instance."""
    for dashboard, panel, expr in panel_queries():
        for name in metric_names(expr) & (COUNTERS | {f"{h}_bucket" for h in HISTOGRAMS}):
            assert re.search(r"\b(sum|count|max|min|avg)\b", expr), f"{dashboard} / {panel}: {name} not aggregated"


def test_panels_use_the_provisioned_datasource():
    provisioned = load_yaml(DATASOURCES)["datasources"]
    uids = {ds["uid"]: ds for ds in provisioned}
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text(encoding="utf-8"))):
            if panel["type"] == "row":
                continue
            sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"] if "datasource" in t]
            for source in sources:
                assert source["uid"] in uids, f"{path.name} / {panel['title']}: unknown datasource {source}"
                assert source["type"] == uids[source["uid"]]["type"] == "prometheus"


def test_dashboard_provider_is_file_based():
    provider = load_yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "sommelier.yml")["providers"][0]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"].startswith("/")


# ---------------------------------------------------------------- end to end

PUSH_USER = "sommelier"
PUSH_PASSWORD = "e2e-push-secret"
# bcrypt of PUSH_PASSWORD, as Ansible writes it into the Pushgateway's web config.
PUSH_PASSWORD_BCRYPT = "$2b$06$r.yeL0rbY0/mPI/g3tVfDu52tQBFL4M116cpaLH6h9O7B0i2swZGy"

BASE_ROW = {
    "fixed_acidity": 7.4, "volatile_acidity": 0.7, "citric_acid": 0, "residual_sugar": 1.9,
    "chlorides": 0.076, "free_sulfur_dioxide": 11, "total_sulfur_dioxide": 34, "density": 0.9978,
    "pH": 3.51, "sulphates": 0.56, "alcohol": 9.4,
}
NORMAL_ROWS = 120
OUT_OF_RANGE_ROWS = 5
SHIFTED_ROWS = 200
FEEDBACK_ROWS = 60


def wine_rows(count: int, seed: int) -> list[dict]:
    """Rows drawn from the bundled data set, so that unshifted features look like the training data."""
    path = REPO / "data" / "winequality-red.csv"
    if not path.exists():
        return [dict(BASE_ROW) for _ in range(count)]
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        reader = csv.reader(f, dialect=csv.Sniffer().sniff(sample, delimiters=",;"))
        header = [re.sub(r"[\s_]+", "", h).lower() for h in next(reader)]
        index = {name: header.index(name.replace("_", "").lower()) for name in FEATURES}
        data = [row for row in reader if row]
    rng = random.Random(seed)
    return [{name: float(row[index[name]]) for name in FEATURES} for row in rng.sample(data, count)]


class Service:
    """A child process with its output in a log file, stopped gracefully at the end."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- last lines of {self.name} ({self.log}) ---\n" + "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()


def wait_until(what: str, check, timeout: float, services: list[Service], interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                pytest.fail(f"{service.name} exited ({service.process.returncode}) while waiting for {what}\n{service.tail()}")
        try:
            last = check()
            if last is True:
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError) as error:
            last = repr(error)
        time.sleep(interval)
    logs = "\n".join(service.tail() for service in services)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}\n{logs}")


def require_binaries(tool) -> dict:
    if not SOMMELIER.exists():
        pytest.fail(
            f"{SOMMELIER.relative_to(REPO)} does not exist: build it with `cargo build` "
            "before running the monitoring end-to-end tests"
        )
    return {"prometheus": tool("prometheus"), "pushgateway": tool("prometheus-pushgateway")}


def start_sommelier(
    name: str, store: Path, gateway_url: str, log_dir: Path, started: list[Service], auth: bool = True,
    extra_env: dict | None = None,
) -> tuple[Service, str]:
    """Starts `sommelier serve` and waits until it is healthy; the service is appended to `started` at once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMMELIER_", "MLFLOW_", "IDENTITY_"))}
    env.update({
        "FUNCTIONS_CUSTOMHANDLER_PORT": str(port),
        "SOMMELIER_STORE": str(store),
        "SOMMELIER_PUSHGATEWAY_URL": gateway_url,
        "SOMMELIER_PUSH_INTERVAL_SECONDS": "1",
        "WEBSITE_INSTANCE_ID": f"e2e-{name}",
        "RUST_LOG": env.get("RUST_LOG", "info"),
    })
    if auth:
        env["SOMMELIER_PUSHGATEWAY_USERNAME"] = PUSH_USER
        env["SOMMELIER_PUSHGATEWAY_PASSWORD"] = PUSH_PASSWORD
    env.update(extra_env or {})
    service = Service(name, [str(SOMMELIER), "serve"], log_dir, env=env)
    started.append(service)
    base = f"http://127.0.0.1:{port}"
    # At its first start sommelier trains a champion on the bundled data.
    wait_until(f"{name}: GET /api/health = 200", lambda: http("GET", f"{base}/api/health", timeout=5)[0] == 200,
               timeout=120, services=[service])
    return service, base


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.services: list[Service] = []
        self.rows_sent = 0
        self.answers: list[tuple[str, float]] = []
        self.predict_statuses: list[int] = []
        self.train_status = None

    def start(self, binaries: dict) -> None:
        tmp = self.tmp
        # Pushgateway with basic auth, as on the VM.
        self.gateway_port = free_port()
        web_config = tmp / "web-config.yml"
        web_config.write_text(yaml.safe_dump({"basic_auth_users": {PUSH_USER: PUSH_PASSWORD_BCRYPT}}))
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.services.append(Service("pushgateway", [
            binaries["pushgateway"], f"--web.listen-address=127.0.0.1:{self.gateway_port}",
            f"--web.config.file={web_config}",
        ], tmp))
        wait_until("pushgateway ready", lambda: http("GET", f"{self.gateway}/-/ready", timeout=2, auth=(PUSH_USER, PUSH_PASSWORD))[0] == 200,
                   timeout=30, services=self.services)

        # Prometheus with the project's configuration, targets rewritten to this test's ports.
        self.prometheus_port = free_port()
        self.prometheus = f"http://127.0.0.1:{self.prometheus_port}"
        config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
        # No Alertmanager here (tests/infra/test_alerting.py has one).
        config.pop("alerting")
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] != "alertmanager"]
        (tmp / "pushgateway_password").write_text(PUSH_PASSWORD)
        for job in config["scrape_configs"]:
            if job["job_name"] == "pushgateway":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.gateway_port}"]}]
                job["basic_auth"]["username"] = PUSH_USER
                job["basic_auth"]["password_file"] = str(tmp / "pushgateway_password")
            elif job["job_name"] == "prometheus":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.prometheus_port}"]}]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.services.append(Service("prometheus", [
            binaries["prometheus"], f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        ], tmp))
        wait_until("prometheus ready", lambda: http("GET", f"{self.prometheus}/-/ready", timeout=2)[0] == 200,
                   timeout=60, services=self.services)

        self.store = tmp / "store"
        self.store.mkdir()
        # The prediction log flushed every second, so that the feedback join below finds the rows.
        self.sommelier, self.base = start_sommelier(
            "sommelier", self.store, self.gateway, tmp, self.services,
            extra_env={"SOMMELIER_PREDICTION_LOG_FLUSH_SECONDS": "1"},
        )

    def query(self, expr: str) -> list[dict]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, text = http("GET", url, timeout=10)
        body = json.loads(text)
        if status != 200 or body.get("status") != "success":
            raise ValueError(f"query {expr!r} failed: {status} {text[:300]}")
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def predict(self, row: dict) -> int:
        status, text = http("POST", f"{self.base}/api/predict", body=row, timeout=30)
        self.predict_statuses.append(status)
        if status == 200:
            self.rows_sent += 1
            answer = json.loads(text)
            self.answers.append((answer["prediction_id"], answer["prediction"]))
        return status

    def send_feedback_and_join(self) -> None:
        """Tasted qualities for some of the predictions, then the join-feedback timer until the
        join finds them: its figures go to the Pushgateway under their own job."""
        labels = [{"prediction_id": pid, "quality": max(0, min(10, round(p) + (i % 3) - 1))}
                  for i, (pid, p) in enumerate(self.answers[:FEEDBACK_ROWS])]
        status, text = http("POST", f"{self.base}/api/feedback", body={"feedback": labels}, timeout=30)
        assert status == 202, f"POST /api/feedback: {status} {text[:300]}"
        timer = {"Data": {"timer": {"IsPastDue": False}}, "Metadata": {}}

        def joined():
            status, text = http("POST", f"{self.base}/join-feedback", body=timer, timeout=60)
            outcome = json.loads(text).get("ReturnValue", {}).get("outcome", {}) if status == 200 else {}
            return outcome.get("labelled_rows", 0) >= FEEDBACK_ROWS or f"{status} {text[:300]}"

        wait_until("the feedback join to find the labelled predictions", joined,
                   timeout=60, services=self.services, interval=1)

    def drive_traffic(self) -> None:
        # Train first: a promoted challenger restarts the drift window against its own training
        # data, which would throw away the shifted rows sent before it.
        self.train_status, self.train_body = http("POST", f"{self.base}/api/train", body={}, timeout=300)

        def trained():
            status, text = http("GET", f"{self.base}/api/metrics", timeout=10)
            runs = re.findall(r'^sommelier_training_runs_total\{[^}]*trigger="http"[^}]*\} (\S+)$', text, re.M)
            return status == 200 and sum(float(r) for r in runs) >= 1 or f"GET /api/metrics: {status}, http runs {runs}"

        if 200 <= self.train_status < 300:
            wait_until("the training to finish (sommelier_training_runs_total{trigger=\"http\"})", trained,
                       timeout=300, services=self.services, interval=1)
        # Prometheus must hold samples from before the traffic, or every rate() would be 0.
        wait_until("Prometheus to scrape the instance's group before the traffic",
                   lambda: (self.value('sum(sommelier_training_runs_total{trigger="http"})') or 0) >= 1,
                   timeout=60, services=self.services, interval=0.5)
        rows = (
            wine_rows(NORMAL_ROWS, seed=1)
            + [{**BASE_ROW, "alcohol": 30.0} for _ in range(OUT_OF_RANGE_ROWS)]
            + [{**row, "alcohol": row["alcohol"] + 4.0} for row in wine_rows(SHIFTED_ROWS, seed=2)]
        )
        for i, row in enumerate(rows):
            self.predict(row)
            if i % 40 == 39:
                # Spread the traffic over several scrapes: a labelled series that appears and
                # reaches its final value between two scrapes shows no rate at all.
                time.sleep(1.5)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


@pytest.fixture(scope="module")
def stack(tool, tmp_path_factory):
    binaries = require_binaries(tool)
    stack = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        stack.start(binaries)
        stack.drive_traffic()
        stack.send_feedback_and_join()
        yield stack
    finally:
        stack.stop()


def test_e2e_requests_were_served(stack):
    assert set(stack.predict_statuses) == {200}, (
        f"predict answered {sorted(set(stack.predict_statuses))}; out-of-range inputs must still be predicted\n"
        + stack.sommelier.tail()
    )
    assert 200 <= stack.train_status < 300, f"POST /api/train: {stack.train_status} {stack.train_body[:500]}"


def test_e2e_metrics_arrive_in_prometheus(stack):
    expected_rows = NORMAL_ROWS + OUT_OF_RANGE_ROWS + SHIFTED_ROWS
    assert stack.rows_sent == expected_rows
    seen = {}

    def check():
        seen["rows"] = stack.value("sum(sommelier_predictions_total)")
        seen["alcohol out of range"] = stack.value('sum(sommelier_feature_out_of_range_total{feature="alcohol"})')
        seen["psi alcohol"] = stack.value('max(sommelier_feature_drift_psi{feature="alcohol"})')
        seen["psi per feature"] = {
            r["metric"].get("feature"): float(r["value"][1])
            for r in stack.query("max by (feature) (sommelier_feature_drift_psi)")
        }
        seen["training runs"] = stack.value("sum(sommelier_training_runs_total)")
        return (
            seen["rows"] == expected_rows
            and (seen["alcohol out of range"] or 0) > 0
            and (seen["psi alcohol"] or 0) > 0.2
            and len(seen["psi per feature"]) == len(FEATURES)
            and (seen["training runs"] or 0) >= 1
        ) or seen

    wait_until("the pushed metrics in Prometheus", check, timeout=90, services=stack.services, interval=1)
    print(f"\nmetrics seen in Prometheus: {json.dumps(seen, indent=1)}")
    psi = seen["psi per feature"]
    assert set(psi) == set(FEATURES)
    for feature in ("pH", "fixed_acidity", "density"):
        assert psi["alcohol"] > psi[feature], f"alcohol was shifted, {feature} was not: {psi}"
    # The gateway keeps one group per instance, with the instance's own labels.
    groups = stack.query('push_time_seconds{job="sommelier"}')
    assert [g["metric"]["instance"] for g in groups] == ["e2e-sommelier"], groups


def test_e2e_alert_rules_are_loaded(stack):
    status, text = http("GET", f"{stack.prometheus}/api/v1/rules", timeout=10)
    assert status == 200
    loaded = {rule["name"] for group in json.loads(text)["data"]["groups"] for rule in group["rules"]}
    assert {rule["alert"] for rule in alerts()} <= loaded
    health = {rule["name"]: rule.get("health") for group in json.loads(text)["data"]["groups"] for rule in group["rules"]}
    assert all(h in ("ok", "unknown") for h in health.values()), health


def test_e2e_every_dashboard_query_returns_data(stack):
    # The pushed metrics must be there first (same condition as above, shorter).
    wait_until("predictions in Prometheus",
               lambda: (stack.value("sum(sommelier_predictions_total)") or 0) > 0,
               timeout=90, services=stack.services, interval=1)
    empty: dict[str, str] = {}
    results = {}
    deadline = time.monotonic() + 60
    pending = panel_queries()
    while pending and time.monotonic() < deadline:
        still = []
        for dashboard, panel, expr in pending:
            result = stack.query(expr)
            values = [r["value"][1] for r in result]
            # Data means at least one number: NaN alone is a rate() or quantile over nothing.
            if any(v != "NaN" for v in values):
                results[f"{dashboard} / {panel}"] = values[:6]
            else:
                still.append((dashboard, panel, expr))
        pending = still
        if pending:
            time.sleep(2)
    for dashboard, panel, expr in pending:
        empty[f"{dashboard} / {panel}"] = f"{expr}  ->  {[r['value'][1] for r in stack.query(expr)]}"
    print("\npanel query results:\n" + "\n".join(f"  {k}: {v}" for k, v in results.items()))
    # The traffic was seen as traffic, not only as totals.
    assert stack.value("sum(rate(sommelier_predictions_total[5m]))") > 0
    assert stack.value("sum(increase(sommelier_predicted_quality_count[10m]))") > 0
    assert stack.value('sum(rate(sommelier_feature_out_of_range_total{feature="alcohol"}[5m]))') > 0
    assert not empty, "panel queries without data:\n" + "\n".join(f"  {k}: {v}" for k, v in empty.items())


class HangingServer:
    """Accepts connections and never answers: a Pushgateway that hangs."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.connections = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.socket.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
                self.connections.append(connection)
            except OSError:
                continue

    def close(self):
        self.stopped.set()
        for connection in self.connections:
            connection.close()
        self.socket.close()


@pytest.mark.parametrize("gateway", ["dead", "hanging"])
def test_e2e_predictions_do_not_wait_for_the_gateway(gateway, tool, tmp_path):
    require_binaries(tool)
    hanging = HangingServer() if gateway == "hanging" else None
    port = hanging.port if hanging else free_port()  # nothing listens on a fresh free port
    store = tmp_path / "store"
    store.mkdir()
    started: list[Service] = []
    try:
        service, base = start_sommelier(f"sommelier-{gateway}", store, f"http://127.0.0.1:{port}", tmp_path, started)
        rows = wine_rows(40, seed=3)
        latencies = []
        for i, row in enumerate(rows):
            t0 = time.perf_counter()
            status, text = http("POST", f"{base}/api/predict", body=row, timeout=60)
            latencies.append(time.perf_counter() - t0)
            assert status == 200, f"predict #{i} with a {gateway} gateway: {status} {text[:300]}\n{service.tail()}"
            numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)]
            assert any(0 <= n <= 10 for n in numbers), f"no quality in {text[:300]}"
            if i % 10 == 9:
                time.sleep(1)  # let push attempts (every second) overlap the requests
        t0 = time.perf_counter()
        status, text = http("POST", f"{base}/api/train", body={}, timeout=300)
        train_seconds = time.perf_counter() - t0
        assert 200 <= status < 300, f"train with a {gateway} gateway: {status} {text[:300]}"
        # The failed pushes are counted (and visible on the instance's own metrics endpoint).
        failures = {}

        def counted():
            status, text = http("GET", f"{base}/api/metrics", timeout=10)
            match = re.search(r"^sommelier_pushgateway_push_failures_total(?:\{[^}]*\})? (\S+)$", text, re.M)
            failures["value"] = float(match.group(1)) if match else None
            return status == 200 and (failures["value"] or 0) > 0 or failures

        wait_until("push failures counted in /api/metrics", counted, timeout=30, services=[service])
        print(
            f"\n{gateway} gateway: {len(latencies)} predictions, latency median "
            f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
            f"training {train_seconds:.1f} s; push failures counted: {failures['value']:.0f}"
        )
    finally:
        for service in started:
            service.stop()
        if hanging is not None:
            hanging.close()


def test_e2e_graceful_shutdown_deletes_the_instance_group(tool, tmp_path):
    """The Pushgateway never forgets: an instance that stops gracefully deletes its own group."""
    binaries = require_binaries(tool)
    port = free_port()
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {PUSH_USER: PUSH_PASSWORD_BCRYPT}}))
    gateway = f"http://127.0.0.1:{port}"
    started: list[Service] = [Service("pushgateway", [
        binaries["pushgateway"], f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web_config}",
    ], tmp_path)]
    store = tmp_path / "store"
    store.mkdir()

    def listed() -> list[dict]:
        status, text = http("GET", f"{gateway}/api/v1/metrics", timeout=5, auth=(PUSH_USER, PUSH_PASSWORD))
        assert status == 200, text[:300]
        return json.loads(text)["data"]

    def groups() -> list[str]:
        return [g["labels"].get("instance", "") for g in listed()]

    def last_training_shared() -> float | None:
        """The time in the shared group job="sommelier_training", which no instance deletes."""
        for group in listed():
            if group["labels"].get("job") == "sommelier_training":
                family = group.get("sommelier_last_successful_training_timestamp_seconds")
                if family:
                    return float(family["metrics"][0]["value"])
        return None

    try:
        wait_until("pushgateway ready", lambda: http("GET", f"{gateway}/-/ready", timeout=2, auth=(PUSH_USER, PUSH_PASSWORD))[0] == 200,
                   timeout=30, services=started)
        service, base = start_sommelier("sommelier-shutdown", store, gateway, tmp_path, started)
        wait_until("the instance's group is pushed", lambda: "e2e-sommelier-shutdown" in groups(), timeout=30, services=started)
        # A training (here: the same data again, unchanged, which counts as up to date) pushes
        # its time to the shared group too.
        status, text = http("POST", f"{base}/api/train", timeout=120)
        assert status == 200, text[:300]
        wait_until("the shared training group is pushed", lambda: last_training_shared() is not None,
                   timeout=30, services=started)
        shared = last_training_shared()
        assert shared is not None and abs(shared - time.time()) < 300, shared
        service.stop()
        assert service.process.returncode == 0, service.tail()
        assert "e2e-sommelier-shutdown" not in groups(), "the group outlived its instance"
        assert last_training_shared() == shared, "the shared training group went with the instance"
    finally:
        for service in started:
            service.stop()


def test_e2e_a_running_instance_deletes_the_groups_of_stopped_ones(tool, tmp_path):
    """An instance killed without a signal cannot delete its group: a running instance deletes
    groups of its job not pushed for SOMMELIER_PUSH_STALE_GROUP_SECONDS, and no other."""
    binaries = require_binaries(tool)
    port = free_port()
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {PUSH_USER: PUSH_PASSWORD_BCRYPT}}))
    gateway = f"http://127.0.0.1:{port}"
    auth = (PUSH_USER, PUSH_PASSWORD)
    started: list[Service] = [Service("pushgateway", [
        binaries["pushgateway"], f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web_config}",
    ], tmp_path)]
    store = tmp_path / "store"
    store.mkdir()

    def groups() -> set[tuple[str, str]]:
        status, text = http("GET", f"{gateway}/api/v1/metrics", timeout=5, auth=auth)
        assert status == 200, text[:300]
        return {(g["labels"].get("job", ""), g["labels"].get("instance", "")) for g in json.loads(text)["data"]}

    def push(job: str, instance: str) -> None:
        request = urllib.request.Request(f"{gateway}/metrics/job/{job}/instance/{instance}",
                                         data=b"ghost_metric 1\n", method="PUT")
        token = base64.b64encode(f"{PUSH_USER}:{PUSH_PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    try:
        wait_until("pushgateway ready", lambda: http("GET", f"{gateway}/-/ready", timeout=2, auth=auth)[0] == 200,
                   timeout=30, services=started)
        push("sommelier", "killed-instance")
        push("other-job", "killed-instance")
        time.sleep(4)
        service, _ = start_sommelier("sommelier-sweeper", store, gateway, tmp_path, started, extra_env={
            "SOMMELIER_PUSH_STALE_GROUP_SECONDS": "3",
        })
        wait_until("the stale group is deleted", lambda: ("sommelier", "killed-instance") not in groups(),
                   timeout=30, services=started)
        remaining = groups()
        assert ("sommelier", "e2e-sommelier-sweeper") in remaining, remaining
        assert ("other-job", "killed-instance") in remaining, "another job's group is not this app's to delete"
        assert "deleted the pushgateway group of a stopped instance" in service.tail(400)
    finally:
        for service in started:
            service.stop()


# ---------------------------------------------------------------- the stack on one machine

COMPOSE = REPO / "compose.yaml"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "schema" / "compose-spec.json"
LOCAL_ALERTMANAGER = MONITORING / "alertmanager" / "local.yml"


def test_compose_file_matches_the_compose_specification():
    import jsonschema  # noqa: PLC0415

    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(load_yaml(COMPOSE))]
    assert not errors, "\n".join(errors)
    # The schema does catch a mistake.
    broken = load_yaml(COMPOSE)
    broken["services"]["prometheus"]["volumes"] = "not a list"
    broken["services"]["grafana"]["imag"] = "grafana/grafana"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_runs_the_stack_with_the_repositorys_own_configuration():
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert set(services) == {"pushgateway", "prometheus", "alertmanager", "notifications", "grafana", "mlflow", "sommelier"}
    mounts = {}
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":v?\d+(\.\d+)+(-\w+)?$", image) or image.endswith(":bookworm-slim"), f"{name}: {image} is not pinned"
        assert service["network_mode"] == "host", name  # one host, like the VM: localhost targets work
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                mounts[target] = source
                if not source.startswith("./target/") and "SOMMELIER_BINARY" not in source:
                    assert (REPO / source).exists(), f"{name}: {source} does not exist"
                assert volume.endswith(":ro"), f"{name}: {volume} should be read-only"
    # One source of truth: the files the VM gets, not copies.
    assert mounts["/etc/prometheus/prometheus.yml"] == "./monitoring/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./monitoring/prometheus/rules"
    assert mounts["/etc/alertmanager/alertmanager.yml"] == "./monitoring/alertmanager/local.yml"
    assert mounts["/etc/grafana/provisioning/datasources"] == "./monitoring/grafana/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./monitoring/grafana/provisioning/dashboards"
    provider = load_yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "sommelier.yml")["providers"][0]
    assert mounts[provider["options"]["path"]] == "./monitoring/grafana/dashboards"
    # Loopback only, as on the VM, and no Alertmanager gossip.
    flags = " ".join(str(a) for s in services.values() for a in (s.get("command") or []))
    for port in (9090, 9091, 9093):
        assert f"--web.listen-address=127.0.0.1:{port}" in flags
    assert "--cluster.listen-address=" in services["alertmanager"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert "--host=127.0.0.1" in services["mlflow"]["command"]
    # The addresses the repository's configuration uses are the ones the services listen on.
    prometheus = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in prometheus["scrape_configs"]}
    assert targets == {"pushgateway": "localhost:9091", "prometheus": "localhost:9090", "alertmanager": "127.0.0.1:9093"}
    assert load_yaml(DATASOURCES)["datasources"][0]["url"] == "http://localhost:9090"


def _route_tree(route: dict) -> list:
    return [(r["receiver"], r.get("matchers"), r.get("group_by")) for r in route.get("routes", [])]


def test_local_alertmanager_routes_like_the_vm(tool, tmp_path):
    """local.yml is the role's routing with a printing receiver: same routes, same inhibition."""
    from test_alerting import ALL_RECEIVERS, render_role  # noqa: PLC0415

    result = run([tool("amtool"), "check-config", str(LOCAL_ALERTMANAGER)])
    assert result.returncode == 0, result.stdout + result.stderr
    local = load_yaml(LOCAL_ALERTMANAGER)
    vm = load_yaml(render_role(tmp_path, **ALL_RECEIVERS))
    assert _route_tree(local["route"]) == _route_tree(vm["route"])
    assert local["route"]["receiver"] == vm["route"]["receiver"]
    assert local["route"]["group_by"] == vm["route"]["group_by"]
    assert local["inhibit_rules"] == vm["inhibit_rules"]
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in vm["receivers"]]
    printer = "http://127.0.0.1:9095/"
    for receiver in local["receivers"]:
        if receiver["name"] != "heartbeat":
            assert receiver["webhook_configs"] == [{"url": printer, "send_resolved": True}]


def test_stack_up_status_down(tool, tmp_path):
    """scripts/stack up --blob, status, down: every service answers, and nothing is left running."""
    require_binaries(tool)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMMELIER_", "MLFLOW_", "STACK_"))}
    env.update({f"STACK_{name}_PORT": str(free_port()) for name in
                ("PROMETHEUS", "PUSHGATEWAY", "ALERTMANAGER", "NOTIFICATIONS", "MLFLOW", "SOMMELIER", "AZURITE")})
    env["SOMMELIER_STACK_DIR"] = str(tmp_path / "stack")
    env["PATH"] = f"{REPO / '.tools' / 'venv' / 'bin'}:{env.get('PATH', '')}"

    def stack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "scripts" / "stack"), *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)

    ports = {name: env[f"STACK_{name.upper()}_PORT"] for name in
             ("prometheus", "pushgateway", "alertmanager", "notifications", "mlflow", "sommelier", "azurite")}
    try:
        started = time.monotonic()
        up = stack("up", "--blob")
        print(f"\nscripts/stack up --blob: {time.monotonic() - started:.1f} s")
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("sommelier", "prometheus", "alertmanager", "pushgateway", "mlflow"):
            assert f"127.0.0.1:{ports[name]}" in up.stdout, f"{name}'s URL not printed:\n{up.stdout}"
        status = stack("status", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        states = dict(line.split()[:2] for line in status.stdout.splitlines())
        assert states == {name: "up" for name in ports}, status.stdout

        # The services are wired: the instance's pushes reach Prometheus through the gateway, the
        # model lives in Azurite, and an alert posted to Alertmanager is printed.
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        wait_until("the instance's metrics in Prometheus", lambda: bool(json.loads(http(
            "GET", f"{prometheus}/api/v1/query?query=sommelier_model_info")[1])["data"]["result"]),
            timeout=60, services=[])
        models = subprocess.run(
            [str(SOMMELIER), "models", "--json", "--store", f"http://127.0.0.1:{ports['azurite']}/devstoreaccount1/models"],
            env={**env, "SOMMELIER_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
            capture_output=True, text=True, timeout=60)
        assert models.returncode == 0 and "champion" in models.stdout, models.stdout + models.stderr
        alert = [{"labels": {"alertname": "StackSmokeTest", "severity": "critical", "instance": "local"},
                  "annotations": {"summary": "printed by the local receiver", "runbook": "nothing to do"}}]
        status_code, text = http("POST", f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts", body=alert)
        assert status_code == 200, text
        log = tmp_path / "stack" / "notifications.log"
        wait_until("the notification printed", lambda: "FIRING StackSmokeTest (critical)" in log.read_text(),
                   timeout=30, services=[], interval=0.2)
        print(log.read_text().strip())
    finally:
        down = stack("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    after = stack("status", timeout=60)
    assert after.returncode == 1
    assert all(line.split()[1] == "down" for line in after.stdout.splitlines()), after.stdout
    # Nothing listens on the stack's ports any more.
    for name, port in ports.items():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0, f"{name} still listens on {port}"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "stack")], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"processes left running: {leftovers}"


# ---------------------------------------------------------------- monitoring/README.md cannot drift

def test_monitoring_readme_generated_sections_are_current(tool):
    result = run([tool("python"), str(MONITORING / "readme.py"), "--check"])
    assert result.returncode == 0, result.stdout + result.stderr + "\nrun: python3 monitoring/readme.py"
    text = (MONITORING / "README.md").read_text(encoding="utf-8")
    # Every alert is listed with its runbook section, which notifications link to by name.
    for rule in alerts():
        assert f"\n### {rule['alert']}\n" in text, rule["alert"]
        assert f"(#{rule['alert'].lower()})" in text, rule["alert"]


def test_monitoring_readme_names_every_file_it_describes():
    text = (MONITORING / "README.md").read_text(encoding="utf-8")
    roles = sorted(p.name for p in (MONITORING / "ansible" / "roles").iterdir() if p.is_dir())
    files = (
        [p.name for p in RULES] + [p.name for p in DASHBOARDS]
        + [p.name for p in (MONITORING / "alertmanager").iterdir() if p.is_file()]
        + [f"`{role}`" for role in roles]
    )
    missing = [name for name in files if name not in text]
    assert not missing, f"monitoring/README.md does not mention {missing}"
