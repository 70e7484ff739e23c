"""Checks of monitoring/ansible: syntax, ansible-lint (production profile), the role layout and
argument specs, the templates rendered against the repository's own configuration files, and
a real run of the pushgateway and prometheus roles against this machine (twice: the second run
must change nothing), after which the Pushgateway demands basic auth and Prometheus scrapes it.

The real run configures this machine's Debian packages prometheus and prometheus-pushgateway
(their /etc files and services, on free ports); it needs root, as in CI. The services are
stopped at the end. The grafana role cannot run here (its apt repository is not reachable):
it is linted and its templates are rendered with Jinja2.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "monitoring" / "ansible"
ROLES = ANSIBLE / "roles"
ROLE_NAMES = ("prometheus", "pushgateway", "grafana", "caddy")
# Variables the inventory generated from Terraform's outputs provides (names agreed with Terraform).
TERRAFORM_VARIABLES = {
    "pushgateway_basic_auth_username", "pushgateway_basic_auth_password",
    "grafana_admin_password", "prometheus_retention_time", "grafana_root_url",
    "pushgateway_web_listen_address", "prometheus_pushgateway_target",
    "caddy_site_address", "caddy_admin_cidrs", "caddy_acme_email",
}
SECRETS = {"pushgateway_basic_auth_password", "prometheus_pushgateway_basic_auth_password", "grafana_admin_password"}


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def run(cmd, cwd=ANSIBLE, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ansible_env(tool_env) -> dict:
    env = dict(tool_env)
    env["ANSIBLE_CONFIG"] = str(ANSIBLE / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
    return env


# ---------------------------------------------------------------- syntax and lint

@pytest.mark.parametrize("playbook", ["site.yml", "tests/localhost.yml", "tests/caddy.yml"])
def test_playbook_syntax(tool, ansible_env, playbook):
    inventory = "inventory/example.yml" if playbook == "site.yml" else "tests/inventory.yml"
    result = run([tool("ansible-playbook"), "--syntax-check", "-i", inventory, playbook], env=ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile(tool, ansible_env):
    result = run(
        [tool("ansible-lint"), "--offline", "--profile", "production", "-c", ".ansible-lint", "--nocolor"],
        env=ansible_env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 failure(s), 0 warning(s)" in output, output


# ---------------------------------------------------------------- role layout

@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_layout(role):
    path = ROLES / role
    for part in (
        "defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml", "handlers/main.yml",
        "tasks/main.yml", "tasks/preflight.yml", "tasks/install.yml", "tasks/configure.yml",
    ):
        assert (path / part).is_file(), f"{role}: {part} missing"
    assert list((path / "templates").glob("*.j2")), f"{role}: no templates"


def test_pushgateway_has_web_config_template():
    text = (ROLES / "pushgateway" / "templates" / "web_config.yml.j2").read_text()
    assert "basic_auth_users" in text
    assert "password_hash('bcrypt'" in text


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_cover_defaults(role):
    defaults = load_yaml(ROLES / role / "defaults" / "main.yml") or {}
    options = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name in defaults:
        assert name in options, f"{role}: default {name} has no argument spec"
        assert options[name].get("description"), f"{role}: {name} undocumented"
    for name, spec in options.items():
        assert name.startswith(f"{role}_"), f"{role}: {name} is not prefixed with the role name"
        if spec.get("required"):
            assert name not in defaults, f"{role}: required {name} has a default"
        if name in SECRETS:
            assert spec.get("required") and spec.get("no_log"), f"{role}: secret {name} must be required and no_log"
            assert name not in defaults, f"{role}: secret {name} has a default"


def test_terraform_variables_are_role_inputs():
    options = {}
    for role in ROLE_NAMES:
        options.update(load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"])
    assert TERRAFORM_VARIABLES <= options.keys()
    assert options["grafana_admin_password"]["required"] is True
    assert options["pushgateway_basic_auth_password"]["required"] is True


def test_no_secret_in_committed_variables():
    for path in [*ANSIBLE.rglob("*.yml")]:
        data = load_yaml(path)
        if not isinstance(data, dict):
            continue
        text = json.dumps(data)
        for secret in SECRETS:
            assert not re.search(rf'"{secret}": "(?!\{{\{{)', text), f"{path.relative_to(REPO)} sets {secret}"
    for role in ROLE_NAMES:
        defaults = (ROLES / role / "defaults" / "main.yml").read_text()
        assert not re.search(r"^\w*password\w*:\s*\S", defaults, re.M), f"{role}: a password default"


def test_site_playbook_targets_the_monitoring_group():
    plays = load_yaml(ANSIBLE / "site.yml")
    assert [play["hosts"] for play in plays] == ["monitoring"]
    assert [r["role"] for r in plays[0]["roles"]] == ["pushgateway", "prometheus", "grafana", "caddy"]
    inventory = load_yaml(ANSIBLE / "inventory" / "example.yml")
    assert "monitoring" in inventory


# ---------------------------------------------------------------- templates rendered with Jinja2

def jinja() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    # The few Ansible filters the templates and defaults use.
    env.filters["to_json"] = json.dumps
    env.filters["split"] = lambda value, sep=None: value.split(sep)
    return env


def role_variables(role: str, **overrides) -> dict:
    """The role's defaults (templated ones resolved) with overrides, as Ansible would see them."""
    variables = {"role_path": str(ROLES / role), "ansible_managed": "Ansible managed", "inventory_hostname": "vm"}
    variables.update(load_yaml(ROLES / role / "defaults" / "main.yml"))
    variables.update(overrides)
    env = jinja()
    for _ in range(3):
        for name, value in list(variables.items()):
            if isinstance(value, str) and "{{" in value:
                variables[name] = env.from_string(value).render(**variables)
    return variables


def render(role: str, template: str, **overrides) -> str:
    source = (ROLES / role / "templates" / template).read_text()
    return jinja().from_string(source).render(**role_variables(role, **overrides))


def test_prometheus_template_renders_the_repository_config():
    rendered = yaml.safe_load(render("prometheus", "prometheus.yml.j2", prometheus_pushgateway_basic_auth_password="x" * 16))
    assert rendered == load_yaml(REPO / "monitoring" / "prometheus" / "prometheus.yml"), (
        "monitoring/prometheus/prometheus.yml and the prometheus role's template diverged"
    )


def test_prometheus_template_follows_variables():
    rendered = yaml.safe_load(render(
        "prometheus", "prometheus.yml.j2",
        prometheus_pushgateway_basic_auth_password="x" * 16,
        prometheus_pushgateway_target="10.0.0.4:9191", prometheus_web_listen_address="0.0.0.0:9999",
        prometheus_pushgateway_basic_auth_username="pusher", prometheus_external_labels={},
    ))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["10.0.0.4:9191"]
    assert jobs["pushgateway"]["basic_auth"]["username"] == "pusher"
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9999"]
    assert "external_labels" not in rendered["global"]


def test_grafana_datasource_template_points_at_prometheus():
    rendered = yaml.safe_load(render("grafana", "datasource.yml.j2", grafana_admin_password="x" * 16))
    assert rendered == load_yaml(REPO / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = rendered["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://localhost:9090"
    # The dashboards use this uid.
    for dashboard in (REPO / "monitoring" / "grafana" / "dashboards").glob("*.json"):
        uids = set(re.findall(r'"uid":\s*"([^"]+)"', dashboard.read_text()))
        assert source["uid"] in uids, dashboard.name

    moved = yaml.safe_load(render("grafana", "datasource.yml.j2", grafana_admin_password="x" * 16,
                                  grafana_prometheus_url="http://10.0.0.5:9090"))
    assert moved["datasources"][0]["url"] == "http://10.0.0.5:9090"


def test_grafana_dashboard_provider_template():
    rendered = yaml.safe_load(render("grafana", "dashboards.yml.j2", grafana_admin_password="x" * 16))
    assert rendered == load_yaml(REPO / "monitoring" / "grafana" / "provisioning" / "dashboards" / "sommelier.yml")
    assert rendered["providers"][0]["options"]["path"] == role_variables("grafana")["grafana_dashboards_dir"]


def test_grafana_ini_template():
    password = 'Pa#ss;word with "quotes" 123'
    text = render("grafana", "grafana.ini.j2", grafana_admin_password=password, grafana_root_url="https://grafana.example.org/")
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    ini.read_string(text)
    assert ini["security"]["admin_user"] == "admin"
    assert ini["security"]["admin_password"] == f'"""{password}"""'
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["server"]["root_url"] == "https://grafana.example.org/"
    assert ini["paths"]["provisioning"] == "/etc/grafana/provisioning"


def test_grafana_role_refuses_weak_passwords():
    preflight = (ROLES / "grafana" / "tasks" / "preflight.yml").read_text()
    assert "grafana_admin_password | length >= 12" in preflight
    assert "'test'" in preflight


# ---------------------------------------------------------------- real run against this machine

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def recap(output: str) -> dict:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.M)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def deployed(tool, ansible_env, tmp_path_factory):
    """The two roles applied twice to this machine; yields (variables, first run, second run)."""
    if os.geteuid() != 0:
        pytest.fail("the Ansible roles configure system packages: run this test as root (as CI does)")
    tool("promtool")  # the role validates the configuration with it
    tmp = tmp_path_factory.mktemp("ansible")
    gateway_port, prometheus_port = free_port(), free_port()
    variables = {
        "pushgateway_basic_auth_username": "sommelier",
        "pushgateway_basic_auth_password": "test-run-password-0123",
        "pushgateway_web_listen_address": f"127.0.0.1:{gateway_port}",
        "prometheus_web_listen_address": f"127.0.0.1:{prometheus_port}",
        "prometheus_pushgateway_target": f"127.0.0.1:{gateway_port}",
        "prometheus_scrape_interval": "2s",
        "prometheus_evaluation_interval": "2s",
        "prometheus_retention_time": "2d",
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    command = [tool("ansible-playbook"), "-i", "tests/inventory.yml", "-c", "local", "tests/localhost.yml",
               "-e", f"@{tmp / 'vars.json'}"]
    runs = []
    try:
        for _ in range(2):
            started = time.monotonic()
            result = run(command, env=ansible_env)
            output = result.stdout + result.stderr
            print(f"\nansible-playbook run {len(runs) + 1}: {time.monotonic() - started:.1f}s, {recap(output) if 'localhost' in output else '?'}")
            assert result.returncode == 0, output[-6000:]
            runs.append(output)
        yield variables, runs[0], runs[1]
    finally:
        for service in ("prometheus", "prometheus-pushgateway"):
            subprocess.run(["service", service, "stop"], capture_output=True, timeout=60)


def test_roles_run_on_localhost(deployed):
    _, first, _ = deployed
    assert recap(first)["failed"] == 0


def test_second_run_changes_nothing(deployed):
    _, _, second = deployed
    changed = [line for line in second.splitlines() if line.startswith("changed:")]
    assert recap(second)["changed"] == 0, f"not idempotent: {changed}\n{second[-4000:]}"


def test_pushgateway_requires_basic_auth(deployed):
    variables, _, _ = deployed
    url = f"http://{variables['pushgateway_web_listen_address']}/metrics"
    user, password = variables["pushgateway_basic_auth_username"], variables["pushgateway_basic_auth_password"]
    assert get(url)[0] == 401
    assert get(url, auth=(user, "wrong-password-0000"))[0] == 401
    status, text = get(url, auth=(user, password))
    assert status == 200
    assert "pushgateway_build_info" in text


def test_prometheus_scrapes_the_gateway_with_the_rules(deployed):
    variables, _, _ = deployed
    base = f"http://{variables['prometheus_web_listen_address']}"
    deadline = time.monotonic() + 60
    health = {}
    while time.monotonic() < deadline:
        status, text = get(f"{base}/api/v1/targets")
        if status == 200:
            health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in json.loads(text)["data"]["activeTargets"]}
            if health.get("pushgateway", ("",))[0] == "up" and health.get("prometheus", ("",))[0] == "up":
                break
        time.sleep(1)
    assert health.get("pushgateway", ("",))[0] == "up", health
    assert health.get("prometheus", ("",))[0] == "up", health
    status, text = get(f"{base}/api/v1/rules")
    names = {rule["name"] for group in json.loads(text)["data"]["groups"] for rule in group["rules"]}
    expected = {
        rule["alert"]
        for path in (REPO / "monitoring" / "prometheus" / "rules").glob("*.yml")
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    }
    assert expected and expected <= names
    status, text = get(f"{base}/api/v1/status/flags")
    assert json.loads(text)["data"]["storage.tsdb.retention.time"] == "2d"


# ---------------------------------------------------------------- the private design, Caddy

def test_nothing_listens_on_all_interfaces_by_default():
    gateway = load_yaml(ROLES / "pushgateway" / "defaults" / "main.yml")["pushgateway_web_listen_address"]
    assert "default_ipv4" in gateway and not gateway.startswith("0.0.0.0")
    assert load_yaml(ROLES / "grafana" / "defaults" / "main.yml")["grafana_http_addr"] == "127.0.0.1"
    assert load_yaml(ROLES / "caddy" / "defaults" / "main.yml")["caddy_upstream"] == "127.0.0.1:3000"
    config = configparser.ConfigParser()
    config.read(ANSIBLE / "ansible.cfg")
    assert config["defaults"].getboolean("host_key_checking") is True


def caddy_adapt(tool_env, tmp_path, **overrides) -> dict:
    """Renders the Caddyfile template and has the real Caddy turn it into its JSON config."""
    variables = {"caddy_site_address": "mon.example.org", "caddy_admin_cidrs": ["203.0.113.10/32", "198.51.100.0/24"]}
    variables.update(overrides)
    path = tmp_path / "Caddyfile"
    path.write_text(render("caddy", "Caddyfile.j2", **variables))
    result = run(["caddy", "adapt", "--adapter", "caddyfile", "--config", str(path)], cwd=tmp_path, env=tool_env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _issuers(config: dict) -> list[str]:
    policies = config["apps"]["tls"]["automation"]["policies"]
    return [issuer["module"] for policy in policies for issuer in policy.get("issuers", [])]


def test_caddyfile_serves_admins_only_with_an_internal_certificate(tool_env, tmp_path):
    config = caddy_adapt(tool_env, tmp_path)
    assert _issuers(config) == ["internal"]
    assert config["admin"]["disabled"] is True
    text = json.dumps(config["apps"]["http"])
    assert '"mon.example.org"' in text
    assert "203.0.113.10/32" in text and "198.51.100.0/24" in text
    assert '"status_code": 403' in text
    assert '"dial": "127.0.0.1:3000"' in text


def test_caddyfile_asks_acme_first_when_an_address_is_given(tool_env, tmp_path):
    config = caddy_adapt(tool_env, tmp_path, caddy_acme_email="ops@example.org")
    assert _issuers(config) == ["acme", "internal"]


@pytest.fixture(scope="module")
def caddy_served(tool, ansible_env, tmp_path_factory):
    """The caddy role applied twice to this machine (config in a temporary directory), then
    the real Caddy run on that config in front of a stand-in for Grafana."""
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if os.geteuid() != 0:
        pytest.fail("the caddy role installs a system package: run this test as root (as CI does)")
    tmp = tmp_path_factory.mktemp("caddy")
    upstream_port, http_port, https_port = free_port(), free_port(), free_port()

    class Grafana(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"grafana stand-in"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", upstream_port), Grafana)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    variables = {
        "caddy_site_address": "localhost",
        "caddy_admin_cidrs": ["127.0.0.1/32"],
        "caddy_upstream": f"127.0.0.1:{upstream_port}",
        "caddy_http_port": http_port,
        "caddy_https_port": https_port,
        "caddy_config_file": str(tmp / "etc" / "Caddyfile"),
        "caddy_manage_service": False,
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    command = [tool("ansible-playbook"), "-i", "tests/inventory.yml", "-c", "local", "tests/caddy.yml",
               "-e", f"@{tmp / 'vars.json'}"]
    runs = []
    for _ in range(2):
        result = run(command, env=ansible_env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        runs.append(result.stdout + result.stderr)
    env = dict(ansible_env, HOME=str(tmp), XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "config"))
    caddy = subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config", variables["caddy_config_file"]],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "caddy.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", https_port)) == 0:
                    break
            time.sleep(0.2)
        yield variables, runs, tmp
    finally:
        caddy.terminate()
        caddy.wait(timeout=30)
        upstream.shutdown()


def https_get(port: int, source: str = "127.0.0.1") -> tuple[int, str]:
    import http.client  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    # The certificate is from Caddy's internal CA: the test checks that TLS is served, not
    # that a browser trusts it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10,
                                                 source_address=(source, 0))
        try:
            connection.request("GET", "/", headers={"Host": "localhost"})
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (ssl.SSLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            connection.close()


def test_caddy_role_is_idempotent(caddy_served):
    _, runs, _ = caddy_served
    assert recap(runs[0])["failed"] == 0
    assert recap(runs[1])["changed"] == 0, runs[1][-3000:]


def test_caddy_serves_grafana_over_https_to_admins_only(caddy_served):
    variables, _, tmp = caddy_served
    status, body = https_get(variables["caddy_https_port"])
    assert status == 200 and body == "grafana stand-in", (tmp / "caddy.log").read_text()[-3000:]
    # Any other source address (127.0.0.2 is loopback too, but outside the admin range): 403.
    status, _ = https_get(variables["caddy_https_port"], source="127.0.0.2")
    assert status == 403
    # Plain HTTP only redirects to HTTPS.
    status, _ = get_no_redirect(f"http://localhost:{variables['caddy_http_port']}/")
    assert status in (301, 308)


def get_no_redirect(url: str) -> tuple[int, str]:
    import http.client  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return response.status, response.getheader("Location", "")
    finally:
        connection.close()
