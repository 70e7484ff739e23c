"""The offline schema check (tests/infra/schema/tfschema.py): terraform/ has no finding against
the provider schemas its version constraints admit, and a fixture with one deliberate mistake
of each kind proves that every kind is caught.

The schemas come from the published CDK bindings, fetched by scripts/install-tools.sh into
.tools/provider-schemas/; deprecations come from the provider's source (see
schema/extract_deprecations.py), because the bindings do not carry them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema_mistakes"
BINDINGS = REPO / ".tools" / "provider-schemas"
BINDING_NAMES = ["azurerm-4.55.0.jsii", "azurerm-4.81.0.jsii", "random-3.7.2.jsii", "tls-4.1.0.jsii"]
DEPRECATIONS = SCHEMA_DIR / "azurerm-4.81.0-deprecations.json"


def check(directory: Path) -> tuple[int, list[str], str]:
    missing = [name for name in BINDING_NAMES if not (BINDINGS / name).is_file()]
    if missing:
        pytest.fail(f"provider schemas missing ({', '.join(missing)}): run scripts/install-tools.sh schemas")
    env = dict(os.environ)
    # python-hcl2 8.x lives apart from checkov's package of the same name (install-tools.sh).
    env["PYTHONPATH"] = str(REPO / ".tools" / "python-hcl2")
    result = subprocess.run(
        [sys.executable, str(SCHEMA_DIR / "tfschema.py"), str(directory),
         *[str(BINDINGS / name) for name in BINDING_NAMES], "--deprecations", str(DEPRECATIONS)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines(), result.stderr


def test_terraform_matches_the_provider_schemas():
    code, findings, log = check(REPO / "terraform")
    assert code == 0 and not findings, "\n".join(findings)
    # The pin `4.81.0` admits 4.81 only: the configuration is checked against what it gets.
    assert "checked against azurerm 4.81.0, random 3.7.2, tls 4.1.0" in log, log


def test_every_kind_of_mistake_is_caught():
    code, findings, log = check(FIXTURE)
    assert code == 1
    # `~> 4.55` admits both azurerm versions: both schemas are used.
    assert "azurerm 4.55.0, azurerm 4.81.0" in log, log
    found = {line.split(": ")[0] + ": " + line.split(": ")[1] for line in findings}
    expected = {
        "unknown-argument: azurerm_resource_group.rg.region",
        "missing-argument: azurerm_storage_container.missing_name.name",
        "block-as-argument: azurerm_subnet.block_as_argument.delegation",
        "argument-as-block: azurerm_virtual_network.argument_as_block.tags",
        "type-error: azurerm_log_analytics_workspace.type_error.retention_in_days",
        "deprecated-argument: azurerm_application_insights.deprecated.local_authentication_disabled",
        "unknown-argument: azurerm_application_insights.new_argument.local_authentication_enabled",
        "unknown-type: azurerm_function_app_flexconsumption.typo",
        "unknown-attribute: output.not_exported.value",
        "unknown-attribute: output.nested_not_exported.value",
        "unchecked-provider: terraform.required_providers.azapi",
    }
    assert found == expected, "\n".join(findings)
    # The argument added in 4.78 is unknown only to the 4.55 schema; the deprecation, read from
    # the 4.81 source, applies to 4.81 only.
    new_argument = [f for f in findings if "new_argument" in f]
    assert len(new_argument) == 1 and "4.55.0" in new_argument[0], new_argument
    deprecated = [f for f in findings if f.startswith("deprecated-argument")]
    assert len(deprecated) == 1 and "4.81.0" in deprecated[0], deprecated


def test_version_constraints(monkeypatch):
    monkeypatch.syspath_prepend(str(SCHEMA_DIR))
    from tfschema import admits  # noqa: PLC0415

    assert admits("~> 4.78", "4.81.0") and not admits("~> 4.78", "4.55.0") and not admits("~> 4.78", "5.0.0")
    assert admits("~> 4.55", "4.55.0") and admits("~> 4.55", "4.81.0")
    assert admits("~> 3.7", "3.7.2") and not admits("~> 3.7.0", "3.8.0")
    assert admits(">= 4.0, < 4.60", "4.55.0") and not admits(">= 4.0, < 4.60", "4.81.0")
