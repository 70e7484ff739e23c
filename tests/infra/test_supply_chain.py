"""The path to production, pinned and audited.

- cargo deny (deny.toml): licences, bans and sources of every crate in Cargo.lock pass, offline;
  fixtures with a forbidden licence, a git source and a wildcard dependency are refused.
- zizmor audits the workflows and Dependabot's configuration offline with no finding, and
  does find an action pinned by tag (so a clean run means something).
- Dependabot keeps every kind of pin current; the Python and npm tools are pinned with their
  hashes, the same ones in the workflows.
- Terraform providers are pinned to exact releases that the offline schema check knows, and a
  committed lock file agrees with them.
- The bill of materials (scripts/sbom.py): reproducible, every crate of the binary with the
  checksum Cargo.lock records, split into linked-in and build-only crates. The package test
  (test_package.py) checks it against the built executable.

cargo-deny comes from scripts/install-tools.sh (cargo install, pinned); zizmor from
scripts/requirements/tools.txt.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "supply_chain"
TARGET = "x86_64-unknown-linux-musl"
sys.path.insert(0, str(REPO / "scripts"))
import sbom  # noqa: E402  (scripts/sbom.py)


def cargo_deny() -> str:
    found = shutil.which("cargo-deny")
    if not found:
        pytest.fail("cargo-deny is not installed: run scripts/install-tools.sh rust")
    return found


def deny(directory: Path, *checks: str, offline: bool = True) -> subprocess.CompletedProcess:
    command = ["cargo", "deny"]
    if offline:
        command.append("--offline")
    command += ["--config", str(REPO / "deny.toml"), "check", "--hide-inclusion-graph", *checks]
    cargo_deny()
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300, env=env)


# ---------------------------------------------------------------------------------------------
# cargo deny
# ---------------------------------------------------------------------------------------------


def test_cargo_deny_passes_licences_bans_and_sources_offline():
    result = deny(REPO, "licenses", "bans", "sources")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "bans ok, licenses ok, sources ok" in output, output
    # The allow-list is what the tree uses: an allowed licence no crate has is a stale entry.
    assert "license-not-encountered" not in output, output


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def test_cargo_deny_refuses_a_forbidden_licence(tmp_path: Path):
    result = deny(copy_fixture("forbidden_licence", tmp_path), "licenses")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "licenses FAILED" in output and 'license = "GPL-3.0-only"' in output, output


def test_cargo_deny_refuses_a_wildcard_dependency(tmp_path: Path):
    result = deny(copy_fixture("wildcard", tmp_path), "bans")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "error[wildcard]" in output and "bans FAILED" in output, output


def test_cargo_deny_refuses_a_git_source(tmp_path: Path):
    # A local git repository: cargo fetches it without a network.
    origin = tmp_path / "origin"
    (origin / "src").mkdir(parents=True)
    (origin / "Cargo.toml").write_text(
        '[package]\nname = "from-git"\nversion = "0.1.0"\nedition = "2021"\nlicense = "MIT"\n'
    )
    (origin / "src" / "lib.rs").write_text("")
    git = ["git", "-c", "user.name=fixture", "-c", "user.email=fixture@example.invalid", "-c", "init.defaultBranch=main"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "fixture"]):
        subprocess.run([*git, *command], cwd=origin, check=True, capture_output=True)
    fixture = copy_fixture("git_source", tmp_path)
    manifest = fixture / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace("GIT_SOURCE", origin.as_uri()))
    result = deny(fixture, "sources", offline=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "error[source-not-allowed]" in output and "sources FAILED" in output, output


def test_deny_toml_refuses_what_the_issue_names():
    config = tomllib.loads((REPO / "deny.toml").read_text())
    assert config["bans"]["wildcards"] == "deny"
    assert config["bans"]["multiple-versions"] in ("warn", "deny")
    sources = config["sources"]
    assert sources["unknown-registry"] == "deny" and sources["unknown-git"] == "deny"
    assert not sources.get("allow-git") and not sources.get("allow-registry"), "only the default registry"
    assert config["advisories"].get("yanked") == "deny"


def test_every_advisory_exception_has_a_reason_and_a_date_still_ahead():
    """An exception reads `{ id = "RUSTSEC-...", reason = "...; revisit YYYY-MM-DD" }`."""
    for entry in tomllib.loads((REPO / "deny.toml").read_text())["advisories"].get("ignore", []):
        assert isinstance(entry, dict) and re.fullmatch(r"RUSTSEC-\d{4}-\d{4}", entry.get("id", "")), entry
        reason = entry.get("reason", "")
        when = re.search(r"revisit (\d{4}-\d{2}-\d{2})", reason)
        assert when, f"{entry['id']}: the reason names no `revisit YYYY-MM-DD` date"
        assert datetime.date.fromisoformat(when.group(1)) >= datetime.date.today(), f"{entry['id']} expired"


def test_ci_checks_advisories_with_cargo_deny_at_the_pinned_version():
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    scripts = [step.get("run", "") for job in ci["jobs"].values() for step in job.get("steps", [])]
    assert any(re.search(r"^cargo deny .*check advisories\s*$", script, re.M) for script in scripts), scripts
    installer = (REPO / "scripts" / "install-tools.sh").read_text()
    assert re.search(r'^CARGO_DENY_VERSION="\d+\.\d+\.\d+"$', installer, re.M)
    assert any("CARGO_DENY_VERSION" in script and "cargo install --locked" in script for script in scripts)


# ---------------------------------------------------------------------------------------------
# zizmor and Dependabot
# ---------------------------------------------------------------------------------------------


def zizmor(tool, tool_env: dict, *paths: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--color=never", *paths],
        cwd=REPO, env=tool_env, capture_output=True, text=True, timeout=300,
    )


def test_zizmor_finds_nothing_in_the_workflows_and_dependabot(tool, tool_env: dict):
    result = zizmor(tool, tool_env, ".")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "No findings to report" in output, output
    for name in ("dependabot.yml", "workflows/ci.yml", "workflows/deploy.yml"):
        assert f".github/{name}" in output, f"zizmor did not audit .github/{name}:\n{output}"


def test_zizmor_would_catch_an_action_pinned_by_tag(tool, tool_env: dict, tmp_path: Path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    ci = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    unpinned, count = re.subn(r"actions/checkout@[0-9a-f]{40}.*", "actions/checkout@v6", ci)
    assert count
    (workflows / "ci.yml").write_text(unpinned)
    result = zizmor(tool, tool_env, str(tmp_path))
    assert result.returncode != 0 and "unpinned-uses" in result.stdout + result.stderr, result.stdout


def test_suppressions_of_zizmor_and_checkov_say_why():
    for path in sorted((REPO / ".github").rglob("*.y*ml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "zizmor: ignore[" in line:
                assert re.search(r"zizmor: ignore\[[a-z-]+\]\s*\S.{10,}", line), f"{path}:{number}: no reason"
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=[A-Z0-9_]+:\S.{10,}", line), f"{path}:{number}: no reason"


def test_dependabot_keeps_every_pin_current():
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    updates = {(update["package-ecosystem"], update["directory"]) for update in config["updates"]}
    assert updates >= {
        ("github-actions", "/"),
        ("cargo", "/"),
        ("pip", "/scripts/requirements"),
        ("npm", "/scripts/node-tools"),
        ("terraform", "/terraform"),
    }, updates
    for ecosystem, directory in updates:
        if ecosystem == "github-actions":
            continue
        assert (REPO / directory.lstrip("/")).is_dir(), f"{ecosystem}: no directory {directory}"
    assert list((REPO / "scripts" / "requirements").glob("*.txt"))
    assert (REPO / "scripts" / "node-tools" / "package-lock.json").is_file()


# ---------------------------------------------------------------------------------------------
# Python and npm tools
# ---------------------------------------------------------------------------------------------

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+) \\$")


def locked_requirements(path: Path) -> dict:
    """name -> version of a pip-compile --generate-hashes file; fails on any unhashed entry."""
    pins: dict = {}
    current = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = REQUIREMENT.match(line)
        if match:
            current = match.group(1).lower().replace("_", "-")
            assert current not in pins, f"{path.name}: {current} twice"
            pins[current] = match.group(2)
            continue
        assert current and re.match(r"^\s+--hash=sha256:[0-9a-f]{64}( \\)?$", line), f"{path.name}: {line!r}"
        pins[current + "#hashed"] = True
    assert pins, f"{path.name} pins nothing"
    for name in [key for key in pins if not key.endswith("#hashed")]:
        assert pins.get(name + "#hashed"), f"{path.name}: {name} has no hash"
    return {name: version for name, version in pins.items() if not name.endswith("#hashed")}


def test_python_tools_are_pinned_with_hashes():
    directory = REPO / "scripts" / "requirements"
    for source in sorted(directory.glob("*.in")):
        locked = locked_requirements(source.with_suffix(".txt"))
        for line in source.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()).groups()
                assert locked.get(name.lower().replace("_", "-")) == version, f"{source.name}: {name}"
    tools = locked_requirements(directory / "tools.txt")
    assert "zizmor" in tools and "checkov" in tools and "pytest" in tools
    # The deploy job's Ansible is the one the test command checks the playbooks with.
    deploy = locked_requirements(directory / "ansible.txt")
    for line in (directory / "ansible.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.split("==")[0].lower()
            assert deploy[name] == tools[name], f"ansible.txt has {name} {deploy[name]}, tools.txt {tools[name]}"


def test_the_install_script_and_the_workflows_install_only_hashed_pins():
    installer = (REPO / "scripts" / "install-tools.sh").read_text()
    pip_installs = [line for line in installer.splitlines() if re.search(r"pip\"? install", line)]
    assert pip_installs and all("--require-hashes" in line for line in pip_installs), pip_installs
    assert "npm ci" in installer and not re.search(r"npm install(?! --package-lock-only)", installer)
    for path in sorted((REPO / ".github" / "workflows").glob("*.yml")):
        for line in path.read_text().splitlines():
            if re.search(r"\bpip3? install\b", line):
                assert "--require-hashes -r scripts/requirements/" in line, f"{path.name}: {line.strip()}"
            assert not re.search(r"\bnpm (install|i)\b", line), f"{path.name}: {line.strip()}"


def test_node_tools_are_locked_with_integrity_hashes():
    directory = REPO / "scripts" / "node-tools"
    manifest = json.loads((directory / "package.json").read_text())
    lock = json.loads((directory / "package-lock.json").read_text())
    for name, version in manifest["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: {version} is not an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"], "package-lock.json is stale"
    for path, entry in lock["packages"].items():
        if path and not entry.get("link"):
            assert re.match(r"sha512-", entry.get("integrity", "")), f"{path}: no integrity hash"


# ---------------------------------------------------------------------------------------------
# Terraform providers
# ---------------------------------------------------------------------------------------------


def provider_pins() -> dict:
    text = (REPO / "terraform" / "versions.tf").read_text()
    pins = {}
    for name, body in re.findall(r"^\s*(\w+)\s*=\s*\{(.*?)\}", text, re.M | re.S):
        source = re.search(r'source\s*=\s*"([^"]+)"', body)
        version = re.search(r'version\s*=\s*"([^"]+)"', body)
        if source and version:
            pins[name] = (source.group(1), version.group(1))
    return pins


def test_terraform_providers_are_pinned_to_exact_releases_the_schema_check_knows():
    pins = provider_pins()
    assert set(pins) >= {"azurerm", "random", "tls"}, pins
    known = (REPO / "tests" / "infra" / "test_schema.py").read_text()
    for name, (_source, version) in pins.items():
        assert re.fullmatch(r"=?\s*\d+\.\d+\.\d+", version), f"{name}: {version!r} is a range"
        exact = version.lstrip("= ")
        assert f'"{name}-{exact}.jsii"' in known, f"{name} {exact}: the offline schema check has no schema for it"


def test_a_committed_lock_file_agrees_with_the_pins_and_is_used_read_only():
    lock = REPO / "terraform" / ".terraform.lock.hcl"
    for name in ("ci.yml", "deploy.yml"):
        text = (REPO / ".github" / "workflows" / name).read_text()
        assert "-lockfile=readonly" in text and "if [ -f .terraform.lock.hcl ]" in text, name
    # A deployment without the lock file stops; CI only warns (it writes the file).
    deploy = (REPO / ".github" / "workflows" / "deploy.yml").read_text()
    unlocked = deploy[deploy.index("if [ -f .terraform.lock.hcl ]"):]
    unlocked = unlocked[:unlocked.index("fi\n")]
    assert "::error" in unlocked and "exit 1" in unlocked, unlocked
    if not lock.exists():
        pytest.skip("terraform/.terraform.lock.hcl not committed yet (terraform/README.md says how)")
    text = lock.read_text()
    for name, (source, version) in provider_pins().items():
        block = re.search(r'provider "registry\.terraform\.io/%s" \{(.*?)\n\}' % re.escape(source), text, re.S)
        assert block, f"the lock file has no {source}"
        assert re.search(r'version\s*=\s*"%s"' % re.escape(version.lstrip("= ")), block.group(1)), name
        assert re.search(r'"h1:[A-Za-z0-9+/=]{44}"', block.group(1)), f"{name}: no h1: hash"
        assert len(re.findall(r'"zh:[0-9a-f]{64}"', block.group(1))) >= 4, f"{name}: zh: hashes missing"


# ---------------------------------------------------------------------------------------------
# The bill of materials
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bill(tmp_path_factory) -> tuple[dict, bytes]:
    out = tmp_path_factory.mktemp("sbom") / "sommelier.cdx.json"
    command = [sys.executable, "scripts/sbom.py", "--target", TARGET, "--bin", "sommelier", "--out", str(out)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    data = out.read_bytes()
    again = out.with_name("again.cdx.json")
    command[-1] = str(again)
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    assert again.read_bytes() == data, "two runs of scripts/sbom.py differ"
    return json.loads(data), data


def lock_packages() -> dict:
    lock = tomllib.loads((REPO / "Cargo.lock").read_text())
    return {(package["name"], package["version"]): package for package in lock["package"]}


def test_sbom_is_cyclonedx_with_every_crate_at_its_locked_checksum(bill):
    document, _ = bill
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.5"
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", document["serialNumber"])
    assert "timestamp" not in document["metadata"]
    assert document["metadata"]["component"]["name"] == "sommelier"
    locked = lock_packages()
    components = document["components"]
    assert len(components) > 150
    for component in components:
        key = (component["name"], component["version"])
        assert key in locked, f"{key} is not in Cargo.lock"
        assert component["hashes"] == [{"alg": "SHA-256", "content": locked[key]["checksum"]}], key
        assert component["purl"] == f"pkg:cargo/{key[0]}@{key[1]}" == component["bom-ref"]
        assert component["scope"] in ("required", "excluded")
        assert component.get("licenses"), f"{key}: no licence"
    refs = {component["bom-ref"] for component in components} | {"pkg:cargo/sommelier@0.1.0"}
    for entry in document["dependencies"]:
        assert entry["ref"] in refs and set(entry["dependsOn"]) <= refs, entry


def test_sbom_has_the_direct_dependencies_and_splits_linked_from_build_only(bill):
    document, _ = bill
    scope = {component["name"]: component["scope"] for component in document["components"]}
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    for name in manifest["dependencies"]:
        assert name in scope, f"direct dependency {name} missing"
    # Procedural macros and build scripts' helpers run in the compiler, not in the binary.
    for name in ("async-trait", "serde_derive", "thiserror-impl", "cc"):
        assert scope.get(name) == "excluded", (name, scope.get(name))
    for name in ("tokio", "axum", "smartcore", "rustls", "serde", "reqwest", "hyper"):
        assert scope.get(name) == "required", (name, scope.get(name))
    # Test-only crates are not part of the binary.
    for name in manifest["dev-dependencies"]:
        assert name not in scope, f"dev-dependency {name} listed"


def test_sbom_follows_the_target_and_the_features_really_built(bill):
    """Windows-only crates and crates that only dev-dependencies' features pull in (cargo
    metadata lists them) are left out; cargo tree is Cargo's own view of the build."""
    document, _ = bill
    names = {component["name"] for component in document["components"]}
    assert not {name for name in names if name.startswith("windows")}, "Windows-only crates listed"
    metadata = sbom.cargo_metadata(REPO / "Cargo.toml", TARGET)
    over = {package["name"] for package in metadata["packages"]} - names - {"sommelier"}
    assert over, "cargo metadata lists nothing more than the build: the check below proves nothing"
    tree = subprocess.run(
        ["cargo", "tree", "--locked", "--target", TARGET, "--edges", "normal,build", "--prefix", "none", "--format", "{p}"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    built = {line.split(" ")[0] for line in tree.splitlines() if line.strip()}
    assert not over & built, f"crates of the build missing from the SBOM: {sorted(over & built)}"
