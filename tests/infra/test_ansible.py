"""Checks of monitoring/ansible: syntax, ansible-lint (production profile), the role layout and
argument specs, the templates rendered against the repository's own configuration files, and
a real run of the pushgateway and prometheus roles against this machine (twice: the second run
must change nothing), after which the Pushgateway demands basic auth and Prometheus scrapes it.

The real run configures this machine's Debian packages prometheus and prometheus-pushgateway
(their /etc files and services, on free ports); it needs root, as in CI. The services are
stopped at the end. Grafana's apt repository is not reachable here: the grafana role runs
against a local signed apt repository holding a stand-in `grafana` package
(tests/infra/fixtures/grafana_stub), with the variables of Terraform's inventory only; the
repository, the package and the sources entry are removed at the end.
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
ROLE_NAMES = ("prometheus", "pushgateway", "alertmanager", "grafana", "caddy")
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
    assert [r["role"] for r in plays[0]["roles"]] == ["pushgateway", "prometheus", "alertmanager", "grafana", "caddy"]
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
    # The CLI reads only this file: without [paths] data it would use another database.
    assert ini["paths"]["data"] == "/var/lib/grafana"
    assert ini["paths"]["logs"] == "/var/log/grafana"
    assert ini["paths"]["plugins"] == "/var/lib/grafana/plugins"


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


# ---------------------------------------------------------------- Terraform's inventory is enough

def terraform_inventory_variables() -> set[str]:
    """Names of the group variables in Terraform's ansible_inventory_yaml output."""
    text = (REPO / "terraform" / "outputs.tf").read_text()
    output = re.search(r'^output\s+"ansible_inventory_yaml"\s*\{(.*?)^\}', text, re.M | re.S)
    assert output, "terraform/outputs.tf has no ansible_inventory_yaml output"
    block = re.search(r"\bvars\s*=\s*\{(.*?)\n\s*\}", output.group(1), re.S)
    assert block, "the ansible_inventory_yaml output sets no group vars"
    return set(re.findall(r"^\s*([a-z_][a-z0-9_]*)\s*=", block.group(1), re.M))


def test_every_required_role_input_comes_from_terraforms_inventory():
    """monitoring/README.md's command runs site.yml with Terraform's inventory and nothing else."""
    provided = terraform_inventory_variables()
    assert TERRAFORM_VARIABLES <= provided, TERRAFORM_VARIABLES - provided
    plays = load_yaml(ANSIBLE / "site.yml")
    for play in plays:
        for entry in play["roles"]:
            role = entry["role"]
            given = set((entry.get("vars") or {}).keys())
            options = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
            required = {name for name, spec in options.items() if spec.get("required")}
            missing = required - provided - given
            assert not missing, f"role {role} requires {sorted(missing)}, which Terraform's inventory does not set"


def test_grafana_repository_defaults_to_grafanas_current_key():
    defaults = load_yaml(ROLES / "grafana" / "defaults" / "main.yml")
    assert defaults["grafana_apt_repository_url"] == "https://apt.grafana.com"
    assert defaults["grafana_apt_key_url"] == "https://apt.grafana.com/gpg-full.key"
    options = load_yaml(ROLES / "grafana" / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name in ("grafana_apt_repository_url", "grafana_apt_key_url"):
        assert not options[name].get("required") and options[name]["default"] == defaults[name]


def test_monitoring_readme_command_uses_terraforms_inventory_alone():
    text = (REPO / "monitoring" / "README.md").read_text()
    commands = [line for line in text.splitlines() if "ansible-playbook" in line and "site.yml" in line]
    assert commands, "monitoring/README.md shows no ansible-playbook command"
    for command in commands:
        assert " -e " not in command and "--extra-vars" not in command, command
    assert "terraform output -raw ansible_inventory_yaml" in text
    assert "monitoring_ssh_known_hosts" in text


def test_grafana_preflight_refuses_the_rotated_out_key(tool, ansible_env, tmp_path):
    variables = {"grafana_admin_password": "test-run-password-0123",
                 "grafana_apt_key_url": "https://apt.grafana.com/gpg.key"}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    result = run([tool("ansible-playbook"), "-i", "tests/inventory.yml", "-c", "local", "tests/grafana.yml",
                  "-e", f"@{tmp_path / 'vars.json'}"], env=ansible_env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "EXPKEYSIG" in output and "gpg-full.key" in output, output[-3000:]
    # It stops before anything is installed.
    assert "Add Grafana's apt repository" not in output


GRAFANA_STUB = Path(__file__).resolve().parent / "fixtures" / "grafana_stub"


def build_stub_repository(root: Path, gnupg: Path) -> None:
    """A signed apt repository (suite stable, component main) with a stand-in `grafana` package,
    laid out as Grafana's is, and its public key as gpg-full.key."""
    package = root / "build" / "grafana"
    for directory in ("DEBIAN", "usr/share/grafana/bin", "usr/sbin", "etc/init.d", "etc/grafana"):
        (package / directory).mkdir(parents=True, exist_ok=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: grafana\nVersion: 0.0.1-stub\nArchitecture: all\nMaintainer: sommelier tests <tests@example.org>\n"
        "Depends: python3\nDescription: stand-in for Grafana in sommelier's Ansible tests\n"
    )
    (package / "DEBIAN" / "conffiles").write_text("/etc/grafana/grafana.ini\n/etc/init.d/grafana-server\n")
    postinst = package / "DEBIAN" / "postinst"
    postinst.write_text(
        "#!/bin/sh\nset -e\n"
        "getent group grafana >/dev/null || groupadd --system grafana\n"
        "getent passwd grafana >/dev/null || useradd --system --gid grafana --home-dir /usr/share/grafana"
        " --no-create-home --shell /usr/sbin/nologin grafana\n"
        "install -d -o grafana -g grafana -m 0750 /var/lib/grafana /var/log/grafana\n"
    )
    postinst.chmod(0o755)
    binary = package / "usr" / "share" / "grafana" / "bin" / "grafana"
    binary.write_bytes((GRAFANA_STUB / "grafana").read_bytes())
    binary.chmod(0o755)
    init = package / "etc" / "init.d" / "grafana-server"
    init.write_bytes((GRAFANA_STUB / "grafana-server.init").read_bytes())
    init.chmod(0o755)
    (package / "etc" / "grafana" / "grafana.ini").write_text("[server]\nhttp_port = 3000\n")
    pool = root / "repo" / "pool" / "main"
    pool.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(package), str(pool / "grafana_0.0.1-stub_all.deb")],
                   check=True, capture_output=True)
    architecture = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()
    index = root / "repo" / "dists" / "stable" / "main" / f"binary-{architecture}"
    index.mkdir(parents=True)
    scan = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=root / "repo",
                          check=True, capture_output=True, text=True)
    (index / "Packages").write_text(scan.stdout)
    import hashlib  # noqa: PLC0415
    packages = (index / "Packages").read_bytes()
    (root / "repo" / "dists" / "stable" / "Release").write_text(
        "Origin: sommelier-tests\nLabel: grafana stand-in\nSuite: stable\nCodename: stable\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
        f"Architectures: {architecture}\nComponents: main\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-{architecture}/Packages\n"
    )
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    gnupg.mkdir(mode=0o700)
    subprocess.run([*gpg, "--quick-gen-key", "sommelier tests <tests@example.org>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)
    subprocess.run([*gpg, "--clearsign", "--output", str(root / "repo" / "dists" / "stable" / "InRelease"),
                    str(root / "repo" / "dists" / "stable" / "Release")], check=True, capture_output=True)
    key = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True)
    (root / "repo" / "gpg-full.key").write_bytes(key.stdout)


def grafana_user(port: int, password: str) -> int:
    return get(f"http://127.0.0.1:{port}/api/user", auth=("admin", password))[0]


@pytest.fixture(scope="module")
def grafana_deployed(tool, ansible_env, tmp_path_factory):
    """The grafana role applied to this machine with Terraform's inventory variables (plus the port
    and the stand-in repository), then again with a new admin password (as when Terraform's
    generated password changes)."""
    import functools  # noqa: PLC0415
    import http.server  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if os.geteuid() != 0:
        pytest.fail("the grafana role installs a system package: run this test as root (as CI does)")
    for command in ("gpg", "dpkg-deb", "dpkg-scanpackages"):
        assert shutil.which(command), f"{command} is missing (Debian packages gnupg, dpkg-dev)"
    if Path("/etc/apt/sources.list.d/grafana.sources").exists():
        pytest.fail("/etc/apt/sources.list.d/grafana.sources exists already: this machine has Grafana's repository")
    tmp = tmp_path_factory.mktemp("grafana")
    build_stub_repository(tmp, tmp / "gnupg")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp / "repo"))
    handler.log_message = lambda *args: None
    repository = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=repository.serve_forever, daemon=True).start()
    repository_url = f"http://127.0.0.1:{repository.server_address[1]}"
    port = free_port()
    # Terraform's inventory sets grafana_admin_password and grafana_root_url; this machine needs a
    # free port and the stand-in repository (the role's default is Grafana's own).
    assert {"grafana_admin_password", "grafana_root_url"} <= terraform_inventory_variables()
    variables = {
        "grafana_admin_password": "first-password-0123",
        "grafana_root_url": "https://mon.example.org/",
        "grafana_http_port": port,
        "grafana_apt_repository_url": repository_url,
        "grafana_apt_key_url": f"{repository_url}/gpg-full.key",
    }
    runs = []

    def play(**overrides) -> str:
        (tmp / "vars.json").write_text(json.dumps({**variables, **overrides}))
        started = time.monotonic()
        result = run([tool("ansible-playbook"), "-i", "tests/inventory.yml", "-c", "local", "tests/grafana.yml",
                      "-e", f"@{tmp / 'vars.json'}"], env=ansible_env)
        output = result.stdout + result.stderr
        print(f"\ngrafana run {len(runs) + 1}: {time.monotonic() - started:.1f}s")
        assert result.returncode == 0, output[-6000:]
        runs.append(output)
        return output

    try:
        first = play()
        first_login = grafana_user(port, variables["grafana_admin_password"])
        second = play(grafana_admin_password="second-password-4567")
        yield {"port": port, "first": first, "second": second, "first_login": first_login}
    finally:
        subprocess.run(["service", "grafana-server", "stop"], capture_output=True, timeout=60)
        subprocess.run(["apt-get", "purge", "-y", "-q", "grafana"], capture_output=True, timeout=300,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        for path in ("/etc/apt/sources.list.d/grafana.sources", "/etc/apt/keyrings/grafana.asc",
                     "/etc/apt/keyrings/grafana.gpg"):
            Path(path).unlink(missing_ok=True)
        for path in Path("/var/lib/apt/lists").glob(f"127.0.0.1:{repository.server_address[1]}_*"):
            path.unlink(missing_ok=True)
        for path in ("/var/lib/grafana", "/var/log/grafana", "/etc/grafana", "/usr/share/grafana"):
            shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["gpgconf", "--homedir", str(tmp / "gnupg"), "--kill", "all"], capture_output=True)
        repository.shutdown()


def test_grafana_role_installs_and_runs_grafana(grafana_deployed):
    assert recap(grafana_deployed["first"])["failed"] == 0
    # The database was created on the first start with grafana.ini's password: no reset needed.
    assert grafana_deployed["first_login"] == 200
    status, body = get(f"http://127.0.0.1:{grafana_deployed['port']}/api/health")
    assert status == 200, body
    ini = configparser.ConfigParser(interpolation=None)
    ini.read("/etc/grafana/grafana.ini")
    assert ini["paths"]["data"] == "/var/lib/grafana"
    assert ini["server"]["root_url"] == "https://mon.example.org/"
    assert Path("/etc/apt/keyrings/grafana.asc").exists()


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks and handlers that reported a change, in order."""
    names, current = [], None
    for line in output.splitlines():
        task = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*?)\]", line)
        if task:
            current = task.group(1)
        elif line.startswith("changed:") and current:
            names.append(current)
    return names


def test_grafana_role_changes_only_what_the_new_password_needs(grafana_deployed):
    # The second run differs from the first only in the admin password: the configuration is
    # rewritten, Grafana restarted and the password reset; nothing else changes.
    assert changed_tasks(grafana_deployed["second"]) == [
        "grafana : Write Grafana's configuration",
        "grafana : Restart grafana",
        "grafana : Reset the admin password",
    ], grafana_deployed["second"][-4000:]


def test_grafana_admin_password_is_reset_in_the_servers_database(grafana_deployed):
    port = grafana_deployed["port"]
    # The new password logs in against the database the running server uses, the old one no longer.
    assert grafana_user(port, "second-password-4567") == 200
    assert grafana_user(port, "first-password-0123") == 401
    log = Path("/var/lib/grafana/cli.log").read_text().splitlines()
    assert len(log) == 1 and log[0].endswith("/var/lib/grafana/grafana.db"), log
    assert not Path("/usr/share/grafana/data").exists(), "the CLI created a second database under the home path"
    # The first run found the password of grafana.ini in place and reset nothing.
    assert re.search(r"TASK \[grafana : Reset the admin password\][^\n]*\nskipping", grafana_deployed["first"])


# ---------------------------------------------------------------- systemd drop-ins

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")


def binds_beyond_loopback(role: str) -> bool:
    """Whether the role's service listens on more than the loopback with its defaults: a listen
    address that is not a loopback address, or no listen address at all (all interfaces)."""
    defaults = load_yaml(ROLES / role / "defaults" / "main.yml") or {}
    addresses = [str(value) for name, value in defaults.items()
                 if name.endswith(("listen_address", "http_addr")) and value not in ("", None)]
    return not addresses or any(not LOOPBACK.match(address) for address in addresses)


def dropin(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text)
    return parser


def assert_network_online_and_restart(parser: configparser.ConfigParser, where: str) -> None:
    assert "network-online.target" in parser["Unit"]["Wants"].split(), where
    assert "network-online.target" in parser["Unit"]["After"].split(), where
    assert parser["Service"]["Restart"] == "always", where
    assert int(parser["Service"]["RestartSec"]) == 5, where


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "defaults" / "main.yml").exists()))
def test_services_beyond_the_loopback_wait_for_the_network_and_restart(role):
    if not binds_beyond_loopback(role):
        pytest.skip(f"{role} listens on the loopback only")
    template = ROLES / role / "templates" / "systemd-dropin.conf.j2"
    assert template.exists(), f"{role} listens beyond the loopback and writes no systemd drop-in"
    assert_network_online_and_restart(dropin(render(role, template.name, **{
        f"{role}_basic_auth_password": "x" * 16, "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}}})), role)
    configure = (ROLES / role / "tasks" / "configure.yml").read_text()
    assert "src: systemd-dropin.conf.j2" in configure and f"{role}_systemd_dropin_dir" in configure


def test_pushgateway_binds_beyond_the_loopback_and_grafana_does_not():
    assert binds_beyond_loopback("pushgateway") and binds_beyond_loopback("caddy")
    assert not binds_beyond_loopback("grafana") and not binds_beyond_loopback("prometheus")


def test_pushgateway_dropin_is_installed(deployed):
    path = Path("/etc/systemd/system/prometheus-pushgateway.service.d/sommelier.conf")
    assert path.exists(), "the pushgateway role wrote no drop-in"
    assert_network_online_and_restart(dropin(path.read_text()), str(path))
