"""Alert delivery: the alertmanager role's configuration (rendered with Jinja2, checked with
`amtool check-config` and `amtool config routes test`), and the end-to-end path on this
machine's Debian packages: a real `sommelier serve` pushes a degraded state to a real
Pushgateway, Prometheus (the project's configuration and rules) fires the alert, Alertmanager
(the role's rendered configuration with test values) delivers it to a local webhook, Slack and
SMTP sink with its runbook, then the resolution; the Watchdog reaches the heartbeat sink on
its interval.

Needs `target/debug/sommelier`, `prometheus`, `prometheus-pushgateway` and
`prometheus-alertmanager` (with `amtool`); fails, never skips, when one is missing.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
import socket
import socketserver
import subprocess
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest
import yaml

from test_monitoring import (
    PROMETHEUS_DIR,
    PUSH_PASSWORD,
    PUSH_PASSWORD_BCRYPT,
    PUSH_USER,
    Service,
    free_port,
    http,
    load_yaml,
    require_binaries,
    start_sommelier,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "monitoring" / "ansible" / "roles" / "alertmanager"
RUNBOOK_BASE = "https://example.org/sommelier/monitoring/README.md"
SMTP_USER, SMTP_PASSWORD = "alerts@example.org", "smtp-relay-secret-0123"


# ---------------------------------------------------------------- the role's templates

def role_variables(**overrides) -> dict:
    """The role's defaults (templated ones resolved) and vars, with overrides, as Ansible sees them."""
    variables = {"ansible_managed": "Ansible managed", "role_path": str(ROLE)}
    variables.update(load_yaml(ROLE / "defaults" / "main.yml"))
    variables.update(overrides)
    env = jinja()
    internal = load_yaml(ROLE / "vars" / "main.yml")
    for _ in range(3):
        for name, value in list(variables.items()) + list(internal.items()):
            if isinstance(value, str) and "{{" in value:
                variables[name] = env.from_string(value).render(**variables).strip()
            elif name not in variables:
                variables[name] = value
    return variables


def jinja() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = lambda value: value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1")
    env.filters["regex_replace"] = lambda value, pattern, repl: re.sub(pattern, repl.replace("\\", "\\"), value)
    return env


def render_role(directory: Path, **overrides) -> Path:
    """Writes what the role writes (configuration, templates, secret files) under `directory`."""
    variables = role_variables(
        alertmanager_config_dir=str(directory),
        alertmanager_config_file=str(directory / "alertmanager.yml"),
        alertmanager_templates_dir=str(directory / "templates"),
        **overrides,
    )
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    env = jinja()
    for template, target in (("alertmanager.yml.j2", directory / "alertmanager.yml"),
                             ("sommelier.tmpl.j2", directory / "templates" / "sommelier.tmpl")):
        target.write_text(env.from_string((ROLE / "templates" / template).read_text()).render(**variables))
    # The role's copy tasks: the secret alone, no trailing newline.
    if variables.get("alertmanager_smtp_password"):
        Path(variables["_alertmanager_smtp_password_file"]).write_text(variables["alertmanager_smtp_password"])
    if variables.get("alertmanager_slack_webhook_url"):
        Path(variables["_alertmanager_slack_url_file"]).write_text(variables["alertmanager_slack_webhook_url"])
    return directory / "alertmanager.yml"


def amtool(tool, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("amtool"), *args], capture_output=True, text=True, timeout=60)


ALL_RECEIVERS = {
    "alertmanager_email_to": "oncall@example.org",
    "alertmanager_smtp_smarthost": "smtp.example.org:587",
    "alertmanager_smtp_from": "alertmanager@example.org",
    "alertmanager_smtp_username": SMTP_USER,
    "alertmanager_smtp_password": SMTP_PASSWORD,
    "alertmanager_slack_webhook_url": "https://hooks.slack.example/services/T0/B0/X",
    "alertmanager_webhook_url": "https://workflow.example.org/hook?sig=abc",
    "alertmanager_heartbeat_url": "https://heartbeat.example.org/ping/uuid",
    "alertmanager_runbook_base_url": RUNBOOK_BASE,
}


@pytest.mark.parametrize("case", ["defaults", "every receiver", "e-mail only", "chat only"])
def test_rendered_configuration_passes_amtool(tool, tmp_path, case):
    overrides = {
        "defaults": {},
        "every receiver": ALL_RECEIVERS,
        "e-mail only": {k: v for k, v in ALL_RECEIVERS.items() if "slack" not in k and "webhook" not in k},
        "chat only": {k: v for k, v in ALL_RECEIVERS.items() if "smtp" not in k and "email" not in k},
    }[case]
    config = render_role(tmp_path, **overrides)
    result = amtool(tool, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout, result.stdout  # the notification texts parse too
    parsed = load_yaml(config)
    receivers = {r["name"]: r for r in parsed["receivers"]}
    assert set(receivers) == {"heartbeat", "critical", "warning"}
    kinds = {name: {k for k in r if k.endswith("_configs")} for name, r in receivers.items()}
    email_set = {"email_configs"} if "alertmanager_email_to" in overrides else set()
    chat = ({"slack_configs"} if "alertmanager_slack_webhook_url" in overrides else set()) | (
        {"webhook_configs"} if "alertmanager_webhook_url" in overrides else set())
    # Each receiver exists only when its variable is set: critical alerts go to all of them,
    # warnings to the chat receivers, and to e-mail only when there is no chat receiver.
    assert kinds["critical"] == email_set | chat
    assert kinds["warning"] == (chat or email_set)
    assert kinds["heartbeat"] == ({"webhook_configs"} if "alertmanager_heartbeat_url" in overrides else set())
    text = config.read_text()
    # Secrets that 0.25 can read from files are not in the configuration; no 0.26-only field.
    assert SMTP_PASSWORD not in text and "hooks.slack.example" not in text
    keys = set(re.findall(r"^\s*-?\s*(\w+):", text, re.M))
    assert not keys & {"url_file", "msteams_configs", "msteamsv2_configs"}, keys
    if email_set:
        assert parsed["global"]["smtp_smarthost"].endswith(":587")
        assert parsed["global"]["smtp_require_tls"] is True
        assert (tmp_path / "alertmanager_smtp_password").read_bytes() == SMTP_PASSWORD.encode()


def test_routing_by_severity_with_inhibition(tool, tmp_path):
    config = render_role(tmp_path, **ALL_RECEIVERS)

    def route(*labels: str) -> str:
        result = amtool(tool, "config", "routes", "test", f"--config.file={config}", *labels)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    assert route("alertname=Watchdog", "severity=none") == "heartbeat"
    assert route("alertname=SommelierServingDegraded", "severity=critical", "instance=a") == "critical"
    assert route("alertname=SommelierHighLatency", "severity=warning") == "warning"
    parsed = load_yaml(config)
    (inhibit,) = parsed["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"', 'instance=~".+"']
    assert inhibit["target_matchers"] == ['severity="warning"', 'instance=~".+"']
    heartbeat = next(r for r in parsed["route"]["routes"] if r["receiver"] == "heartbeat")
    # Sent at every group_interval tick (see the template).
    assert heartbeat["group_interval"] == "1m" and heartbeat["repeat_interval"] == "1s"


def test_every_alert_has_a_severity_the_routes_know():
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    expected = "none" if rule["alert"] == "Watchdog" else None
                    severity = rule["labels"]["severity"]
                    assert severity == expected if expected else severity in ("critical", "warning"), rule["alert"]


def test_defaults_listen_on_the_loopback_alone():
    variables = role_variables()
    args = variables["_alertmanager_args"]
    assert "--web.listen-address=127.0.0.1:9093" in args
    assert "--cluster.listen-address=" in args.split("'")  # the empty value: clustering off


# ---------------------------------------------------------------- sinks

class Recorder:
    """What the sinks received, with the time of arrival."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[tuple[float, str, object]] = []

    def add(self, kind: str, item) -> None:
        with self.lock:
            self.items.append((time.monotonic(), kind, item))

    def of(self, kind: str) -> list[tuple[float, object]]:
        with self.lock:
            return [(t, item) for t, k, item in self.items if k == kind]


def start_http_sink(recorder: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.add(self.path.strip("/"), json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for Alertmanager: EHLO with AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, QUIT."""

    recorder: Recorder

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink ESMTP")
        sender, recipients, auth = None, [], None
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-sink")
                self.reply("250-AUTH PLAIN LOGIN")
                self.reply("250 8BITMIME")
            elif verb == "AUTH":
                parts = line.split()
                if parts[1].upper() == "PLAIN":
                    token = parts[2] if len(parts) > 2 else None
                    if token is None:
                        self.reply("334 ")
                        token = self.rfile.readline().decode().strip()
                    _, user, password = base64.b64decode(token).split(b"\0")
                else:
                    self.reply("334 VXNlcm5hbWU6")
                    user = base64.b64decode(self.rfile.readline().strip())
                    self.reply("334 UGFzc3dvcmQ6")
                    password = base64.b64decode(self.rfile.readline().strip())
                auth = (user.decode(), password.decode())
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                sender = line
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b""):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message = email.message_from_bytes(bytes(data), policy=email.policy.default)
                self.recorder.add("email", {"auth": auth, "from": sender, "to": recipients, "message": message})
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


def start_smtp_sink(recorder: Recorder) -> socketserver.ThreadingTCPServer:
    handler = type("Handler", (SmtpHandler,), {"recorder": recorder})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def email_text(message) -> str:
    """Every text part of a message, decoded (Alertmanager sends quoted-printable parts)."""
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")


# ---------------------------------------------------------------- end to end

def write_pointer(store: Path, champion: dict) -> None:
    tmp = store / "champion.tmp"
    tmp.write_text(json.dumps(champion))
    os.replace(tmp, store / "champion")


@pytest.fixture(scope="module")
def pipeline(tool, tmp_path_factory):
    binaries = require_binaries(tool)
    binaries["alertmanager"] = tool("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("alerting")
    recorder = Recorder()
    services: list[Service] = []
    sinks = [start_http_sink(recorder), start_smtp_sink(recorder)]
    http_port, smtp_port = sinks[0].server_address[1], sinks[1].server_address[1]
    try:
        # Pushgateway with basic auth, as on the VM.
        gateway_port = free_port()
        (tmp / "web-config.yml").write_text(yaml.safe_dump({"basic_auth_users": {PUSH_USER: PUSH_PASSWORD_BCRYPT}}))
        gateway = f"http://127.0.0.1:{gateway_port}"
        services.append(Service("pushgateway", [
            binaries["pushgateway"], f"--web.listen-address=127.0.0.1:{gateway_port}",
            f"--web.config.file={tmp / 'web-config.yml'}",
        ], tmp))

        # Alertmanager with the role's configuration: every receiver pointed at a local sink,
        # short intervals.
        am_port = free_port()
        sink = f"http://127.0.0.1:{http_port}"
        config = render_role(
            tmp / "alertmanager",
            alertmanager_email_to="oncall@example.org",
            alertmanager_smtp_smarthost=f"127.0.0.1:{smtp_port}",
            alertmanager_smtp_from="alertmanager@example.org",
            alertmanager_smtp_username=SMTP_USER,
            alertmanager_smtp_password=SMTP_PASSWORD,
            alertmanager_smtp_require_tls=False,  # the sink speaks plain SMTP
            alertmanager_slack_webhook_url=f"{sink}/slack",
            alertmanager_webhook_url=f"{sink}/webhook",
            alertmanager_heartbeat_url=f"{sink}/heartbeat",
            alertmanager_runbook_base_url=RUNBOOK_BASE,
            alertmanager_group_wait="1s",
            alertmanager_group_interval="1s",
            alertmanager_heartbeat_interval="2s",
        )
        check = amtool(tool, "check-config", str(config))
        assert check.returncode == 0, check.stdout + check.stderr
        alertmanager = f"http://127.0.0.1:{am_port}"
        services.append(Service("alertmanager", [
            binaries["alertmanager"], f"--config.file={config}", f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=", f"--storage.path={tmp / 'alertmanager-data'}",
        ], tmp))

        # Prometheus with the project's configuration and rules, targets moved to this test's
        # ports. The serving-degraded alert gets a 1 s `for` (in a copy of its rule file).
        prometheus_port = free_port()
        prometheus = f"http://127.0.0.1:{prometheus_port}"
        rules = tmp / "rules"
        rules.mkdir()
        for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
            data = load_yaml(path)
            for group in data["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") == "SommelierServingDegraded":
                        rule["for"] = "1s"
            (rules / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
        prom = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
        prom["global"].update(scrape_interval="1s", evaluation_interval="1s")
        prom["rule_files"] = [str(rules / "*.yml")]
        (tmp / "pushgateway_password").write_text(PUSH_PASSWORD)
        (am_config,) = prom["alerting"]["alertmanagers"]
        am_config["static_configs"] = [{"targets": [f"127.0.0.1:{am_port}"]}]
        targets = {"pushgateway": gateway_port, "prometheus": prometheus_port, "alertmanager": am_port}
        assert {job["job_name"] for job in prom["scrape_configs"]} == set(targets)
        for job in prom["scrape_configs"]:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
            if job["job_name"] == "pushgateway":
                job["basic_auth"]["password_file"] = str(tmp / "pushgateway_password")
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
        services.append(Service("prometheus", [
            binaries["prometheus"], f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}",
            # An alert sent before the Alertmanager is discovered is re-sent after this delay
            # (1 min by default): the Watchdog, firing at the first evaluation, would wait that long.
            "--rules.alert.resend-delay=2s",
        ], tmp))
        for name, url, auth in (("pushgateway", gateway, (PUSH_USER, PUSH_PASSWORD)),
                                ("alertmanager", alertmanager, None), ("prometheus", prometheus, None)):
            wait_until(f"{name} ready", lambda: http("GET", f"{url}/-/ready", timeout=2, auth=auth)[0] == 200,
                       timeout=60, services=services)

        store = tmp / "store"
        store.mkdir()
        sommelier, base = start_sommelier("sommelier-alerting", store, gateway, tmp, services,
                                          extra_env={"SOMMELIER_MODEL_REFRESH_SECONDS": "1"})
        yield {
            "recorder": recorder, "services": services, "store": store, "gateway": gateway,
            "prometheus": prometheus, "alertmanager": alertmanager, "base": base, "sommelier": sommelier,
        }
    finally:
        for service in reversed(services):
            service.stop()
        for server in sinks:
            server.shutdown()
            server.server_close()


def alert_notifications(recorder: Recorder, kind: str, alertname: str, status: str) -> list[tuple[float, dict]]:
    return [(t, body) for t, body in recorder.of(kind)
            if body.get("status") == status and body.get("commonLabels", {}).get("alertname") == alertname]


def emails(recorder: Recorder, subject: str) -> list[tuple[float, dict]]:
    return [(t, item) for t, item in recorder.of("email") if subject in str(item["message"]["Subject"])]


def slack_messages(recorder: Recorder, title: str) -> list[tuple[float, dict]]:
    """Slack messages carry the role's texts, not Alertmanager's JSON."""
    return [(t, body) for t, body in recorder.of("slack") if title in body["attachments"][0]["title"]]


def test_watchdog_reaches_the_heartbeat_on_its_interval(pipeline):
    recorder = pipeline["recorder"]
    wait_until("three Watchdog heartbeats", lambda: len(recorder.of("heartbeat")) >= 3 or recorder.of("heartbeat"),
               timeout=60, services=pipeline["services"], interval=0.2)
    beats = recorder.of("heartbeat")
    assert all(body["commonLabels"]["alertname"] == "Watchdog" and body["status"] == "firing" for _, body in beats)
    gaps = [b[0] - a[0] for a, b in zip(beats, beats[1:])]
    print(f"\nheartbeat gaps (interval 2 s): {[round(g, 2) for g in gaps]}")
    # One heartbeat per interval, not one per two intervals.
    assert all(1.0 <= gap <= 3.5 for gap in gaps[:2]), gaps
    # Nothing else reaches the heartbeat, and the Watchdog reaches no person.
    for kind in ("webhook", "slack"):
        assert not any(b.get("commonLabels", {}).get("alertname") == "Watchdog" for _, b in recorder.of(kind))


def test_a_critical_alert_mutes_only_its_own_instances_warnings(pipeline):
    """Alerts posted straight to the Alertmanager: a service-wide critical (no instance) mutes
    nothing; an instance's critical mutes that instance's warnings and no other's."""
    alertmanager, services = pipeline["alertmanager"], pipeline["services"]
    alerts = [
        {"alertname": "InhibitServiceWideCritical", "severity": "critical"},
        {"alertname": "InhibitServiceWideWarning", "severity": "warning"},
        {"alertname": "InhibitInstanceCritical", "severity": "critical", "instance": "a"},
        {"alertname": "InhibitInstanceWarning", "severity": "warning", "instance": "a"},
        {"alertname": "InhibitOtherInstanceWarning", "severity": "warning", "instance": "b"},
    ]
    status, text = http("POST", f"{alertmanager}/api/v2/alerts", body=[{"labels": labels} for labels in alerts])
    assert status == 200, text

    def inhibited() -> dict[str, bool] | None:
        code, body = http("GET", f"{alertmanager}/api/v2/alerts")
        found = {a["labels"]["alertname"]: bool(a["status"]["inhibitedBy"])
                 for a in json.loads(body) if a["labels"]["alertname"].startswith("Inhibit")}
        return found if code == 200 and len(found) == len(alerts) else None

    wait_until("the posted alerts listed", lambda: inhibited() is not None, timeout=30, services=services)
    # Inhibition is computed as alerts arrive; one more look lets it settle.
    wait_until("the instance's warning muted", lambda: (inhibited() or {}).get("InhibitInstanceWarning"),
               timeout=30, services=services)
    assert inhibited() == {
        "InhibitServiceWideCritical": False,
        "InhibitServiceWideWarning": False,
        "InhibitInstanceCritical": False,
        "InhibitInstanceWarning": True,
        "InhibitOtherInstanceWarning": False,
    }


def test_degraded_serving_reaches_every_receiver_with_its_runbook_and_resolves(pipeline):
    recorder, store, services = pipeline["recorder"], pipeline["store"], pipeline["services"]
    # The first start trained and promoted a champion; a broken newer version becomes champion.
    champion = json.loads((store / "champion").read_text())
    good = champion["version"]
    broken = "99991231T235959999Z-broken0"
    (store / broken).mkdir()
    for item in (store / good).iterdir():
        (store / broken / item.name).write_bytes(item.read_bytes())
    (store / broken / "model.bin").write_bytes(b"not a model")
    degraded_query = 'max(sommelier_serving_degraded{reason="champion_unservable"})'

    def gateway_value() -> float | None:
        status, text = http("GET", f"{pipeline['gateway']}/metrics", timeout=5, auth=(PUSH_USER, PUSH_PASSWORD))
        match = re.search(r'^sommelier_serving_degraded\{[^}]*reason="champion_unservable"[^}]*\} (\S+)$', text, re.M)
        return float(match.group(1)) if status == 200 and match else None

    wait_until("the instance's group in the gateway", lambda: gateway_value() == 0, timeout=60, services=services)
    t_state = time.monotonic()
    write_pointer(store, {"version": broken, "previous": good,
                          "updated_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")})
    wait_until("the degraded state pushed to the gateway", lambda: gateway_value() == 1 or gateway_value(),
               timeout=60, services=services, interval=0.05)
    t_push = time.monotonic()
    wait_until("the firing notification at the webhook",
               lambda: bool(alert_notifications(recorder, "webhook", "SommelierServingDegraded", "firing")),
               timeout=60, services=services, interval=0.05)
    t_webhook = alert_notifications(recorder, "webhook", "SommelierServingDegraded", "firing")[0][0]
    print(f"\nstate change -> pushed to the gateway: {t_push - t_state:.2f} s; "
          f"push -> webhook: {t_webhook - t_push:.2f} s (1 s scrape, evaluation, for and group_wait)")
    prometheus_value = json.loads(http("GET", f"{pipeline['prometheus']}/api/v1/query?query={degraded_query}")[1])
    assert prometheus_value["data"]["result"][0]["value"][1] == "1"

    # The generic webhook: Alertmanager's JSON, with the runbook among the annotations.
    _, body = alert_notifications(recorder, "webhook", "SommelierServingDegraded", "firing")[0]
    (alert,) = body["alerts"]
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["instance"] == "e2e-sommelier-alerting"
    assert "sommelier models promote" in alert["annotations"]["runbook"]
    # Slack and e-mail: the texts of the role's template, with the runbook and its link.
    link = f"{RUNBOOK_BASE}#sommelierservingdegraded"
    wait_until("the firing e-mail and Slack message",
               lambda: bool(emails(recorder, "[FIRING:1] SommelierServingDegraded"))
               and bool(slack_messages(recorder, "[FIRING:1] SommelierServingDegraded"))
               or {"subjects": [str(m["message"]["Subject"]) for _, m in recorder.of("email")],
                   "slack": [b.get("attachments", [{}])[0].get("title") for _, b in recorder.of("slack")]},
               timeout=30, services=services, interval=0.1)
    _, mail = emails(recorder, "[FIRING:1] SommelierServingDegraded")[0]
    # The relay saw the password exactly as set: no trailing newline from the password file.
    assert mail["auth"] == (SMTP_USER, SMTP_PASSWORD)
    text = email_text(mail["message"])
    assert link in text and "sommelier models promote" in text, text
    assert "cannot serve the champion" in text
    _, slack = slack_messages(recorder, "[FIRING:1] SommelierServingDegraded")[0]
    assert link in slack["attachments"][0]["text"], slack

    # The champion pointer goes back to the version that loads: the resolution follows.
    t_fixed = time.monotonic()
    write_pointer(store, {"version": good, "updated_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")})
    wait_until("the resolved notification at the webhook and by e-mail",
               lambda: bool(alert_notifications(recorder, "webhook", "SommelierServingDegraded", "resolved"))
               and bool(emails(recorder, "[RESOLVED] SommelierServingDegraded")),
               timeout=60, services=services, interval=0.1)
    t_resolved = alert_notifications(recorder, "webhook", "SommelierServingDegraded", "resolved")[0][0]
    print(f"pointer fixed -> resolved at the webhook: {t_resolved - t_fixed:.2f} s")


def test_alertmanager_is_scraped_and_reached(pipeline):
    prometheus = pipeline["prometheus"]

    def check():
        status, text = http("GET", f"{prometheus}/api/v1/query?query=up", timeout=5)
        up = {r["metric"]["job"]: r["value"][1] for r in json.loads(text)["data"]["result"]}
        status, text = http("GET", f"{prometheus}/api/v1/query?query=prometheus_notifications_alertmanagers_discovered", timeout=5)
        discovered = [r["value"][1] for r in json.loads(text)["data"]["result"]]
        return (up == {"pushgateway": "1", "prometheus": "1", "alertmanager": "1"} and discovered == ["1"]) or (up, discovered)

    wait_until("every target up and the Alertmanager discovered", check, timeout=30, services=pipeline["services"])
    status, text = http("GET", f"{prometheus}/api/v1/alerts", timeout=5)
    firing = {a["labels"]["alertname"] for a in json.loads(text)["data"]["alerts"] if a["state"] == "firing"}
    assert "Watchdog" in firing
    assert not firing & {"PrometheusAlertmanagerUnreachable", "AlertmanagerNotificationsFailing"}, firing


# ---------------------------------------------------------------- the role, run against this machine

ANSIBLE = REPO / "monitoring" / "ansible"


def recap(output: str) -> dict:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.M)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def listening_addresses(pid: int) -> set[str]:
    """The TCP addresses a process listens on: its socket inodes matched in /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if width == 8:
                host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
            else:
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                host = socket.inet_ntop(socket.AF_INET6, raw)
            found.add(f"{host}:{int(port, 16)}")
    return found


@pytest.fixture(scope="module")
def role_runs(tool, tool_env, tmp_path_factory):
    """The role applied twice to this machine (the Debian package, its /etc files and service, on a
    free port) with every receiver set; yields (variables, first run, second run, pid)."""
    if os.geteuid() != 0:
        pytest.fail("the alertmanager role configures a system package: run this test as root (as CI does)")
    tool("amtool")  # the role validates the configuration with it
    tmp = tmp_path_factory.mktemp("alertmanager-role")
    port = free_port()
    variables = {**ALL_RECEIVERS, "alertmanager_web_listen_address": f"127.0.0.1:{port}",
                 "alertmanager_group_wait": "1s", "alertmanager_group_interval": "2s"}
    (tmp / "vars.json").write_text(json.dumps(variables))
    env = dict(tool_env, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_HOST_KEY_CHECKING="False")
    command = [tool("ansible-playbook"), "-i", "tests/inventory.yml", "-c", "local", "tests/alertmanager.yml",
               "-e", f"@{tmp / 'vars.json'}"]
    runs = []
    try:
        for _ in range(2):
            started = time.monotonic()
            result = subprocess.run(command, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=600)
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-6000:]
            print(f"\nalertmanager role run {len(runs) + 1}: {time.monotonic() - started:.1f}s, {recap(output)}")
            runs.append(output)
        pid = int(Path("/run/prometheus/prometheus-alertmanager.pid").read_text().strip()) \
            if Path("/run/prometheus/prometheus-alertmanager.pid").exists() else None
        if pid is None:  # under systemd
            pid = int(subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "prometheus-alertmanager"],
                                     capture_output=True, text=True).stdout.strip())
        yield variables, runs[0], runs[1], pid
    finally:
        subprocess.run(["service", "prometheus-alertmanager", "stop"], capture_output=True, timeout=60)


def test_role_runs_and_a_second_run_changes_nothing(role_runs):
    _, first, second, _ = role_runs
    assert recap(first)["failed"] == 0
    changed = [line for line in second.splitlines() if line.startswith("changed:")]
    assert recap(second)["changed"] == 0, f"not idempotent: {changed}\n{second[-4000:]}"


def test_role_listens_on_the_loopback_only_without_clustering(role_runs):
    variables, _, _, pid = role_runs
    assert listening_addresses(pid) == {variables["alertmanager_web_listen_address"]}
    status, _ = http("GET", f"http://{variables['alertmanager_web_listen_address']}/-/ready", timeout=5)
    assert status == 200


def test_role_writes_the_configuration_and_secrets_for_the_service_only(tool, role_runs):
    variables, _, _, _ = role_runs
    config = Path("/etc/prometheus/alertmanager.yml")
    assert amtool(tool, "check-config", str(config)).returncode == 0
    status, text = http("GET", f"http://{variables['alertmanager_web_listen_address']}/api/v2/status", timeout=5)
    loaded = json.loads(text)["config"]["original"]
    assert "workflow.example.org" in loaded and "heartbeat.example.org" in loaded
    for path in (config, Path("/etc/prometheus/alertmanager_smtp_password"),
                 Path("/etc/prometheus/alertmanager_slack_webhook_url")):
        mode = path.stat().st_mode & 0o777
        assert mode == 0o640, f"{path}: {oct(mode)}"
    # Versions before 0.27 send the file as it is: no trailing newline.
    assert Path("/etc/prometheus/alertmanager_smtp_password").read_bytes() == SMTP_PASSWORD.encode()
