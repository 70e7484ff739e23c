"""Checks of the GitHub Actions workflows in .github/workflows.

Linters first (actionlint with shellcheck, checkov's github_actions framework),
then what they cannot know about this project: least-privilege permissions,
pinned actions, no expressions inside scripts, the deploy order, and that the
workflows agree with the test command and with Terraform's variables and outputs.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

WORKFLOWS = ("ci.yml", "deploy.yml")

# owner/repo[/path]@ref, where ref is a full commit SHA or a released version tag.
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@(?:[0-9a-f]{40}|v\d+(?:\.\d+){0,2})$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name}: not a mapping"
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="module")
def workflow_dir(repo: Path) -> Path:
    return repo / ".github" / "workflows"


@pytest.fixture(scope="module")
def workflows(workflow_dir: Path) -> dict:
    return {path.name: load(path) for path in sorted(workflow_dir.glob("*.y*ml"))}


@pytest.fixture(scope="module")
def ci(workflows: dict) -> dict:
    return workflows["ci.yml"]


@pytest.fixture(scope="module")
def deploy(workflows: dict) -> dict:
    return workflows["deploy.yml"]


def steps_of(job: dict) -> list:
    return job.get("steps") or []


def uses_of(step: dict) -> str:
    return step.get("uses", "") or ""


def all_steps(workflow: dict):
    for job_name, job in workflow.get("jobs", {}).items():
        for step in steps_of(job):
            yield job_name, step


def run_lines(job: dict) -> list:
    """Every line of every run: script of the job, stripped, in order."""
    lines = []
    for step in steps_of(job):
        for line in (step.get("run") or "").splitlines():
            lines.append(line.strip())
    return lines


def first_index(lines: list, pattern: str, start: int = 0) -> int:
    regex = re.compile(pattern)
    for index in range(start, len(lines)):
        if regex.search(lines[index]):
            return index
    pytest.fail(f"no line from {start} on matches {pattern!r}")


def job_using(workflow: dict, action: str) -> list:
    return [
        name
        for name, job in workflow.get("jobs", {}).items()
        if any(uses_of(step).split("@")[0].lower() == action for step in steps_of(job))
    ]


# ---------------------------------------------------------------------------------------------
# Linters
# ---------------------------------------------------------------------------------------------


def test_the_two_workflows_exist(workflow_dir: Path):
    for name in WORKFLOWS:
        assert (workflow_dir / name).is_file(), f"missing .github/workflows/{name}"


def test_actionlint_is_clean(repo: Path, tool, tool_env: dict):
    actionlint = tool("actionlint")
    shellcheck = shutil.which("shellcheck", path=tool_env["PATH"])
    assert shellcheck, "shellcheck is not installed (Debian package shellcheck): actionlint would skip every run: script"
    files = sorted(str(p.relative_to(repo)) for p in (repo / ".github" / "workflows").glob("*.y*ml"))
    result = subprocess.run(
        [actionlint, "-no-color", f"-shellcheck={shellcheck}", *files],
        cwd=repo, env=tool_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_checkov_github_actions_has_no_failures(repo: Path, tool, tool_env: dict):
    checkov = tool("checkov")
    result = subprocess.run(
        [checkov, "-d", ".github", "--framework", "github_actions", "--skip-download", "--compact", "--quiet"],
        cwd=repo, env=tool_env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"checkov reported failures:\n{output}"
    counts = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", output)
    assert counts, f"checkov printed no summary (did it scan anything?):\n{output}"
    assert int(counts.group(1)) > 0 and int(counts.group(2)) == 0, output


# ---------------------------------------------------------------------------------------------
# Least privilege and supply chain
# ---------------------------------------------------------------------------------------------


def test_top_level_permissions_are_empty_or_read_only(workflows: dict):
    for name, workflow in workflows.items():
        assert "permissions" in workflow, f"{name}: no top-level permissions (the default token may write)"
        permissions = workflow["permissions"]
        if isinstance(permissions, str):
            assert permissions == "read-all", f"{name}: top-level permissions {permissions!r}"
        else:
            granted = {scope: level for scope, level in (permissions or {}).items() if level != "none"}
            assert all(level == "read" for level in granted.values()), f"{name}: top-level grants {granted}"


def test_every_job_declares_its_own_permissions(workflows: dict):
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            assert "permissions" in job, f"{name}: job {job_name} has no permissions block"
            permissions = job["permissions"] or {}
            assert isinstance(permissions, dict), f"{name}: job {job_name} permissions {permissions!r}"
            writes = {scope for scope, level in permissions.items() if level == "write"}
            assert writes <= {"id-token"}, f"{name}: job {job_name} writes {sorted(writes)}"


def test_id_token_write_only_where_azure_login_is_used(workflows: dict):
    for name, workflow in workflows.items():
        top = workflow.get("permissions")
        assert not isinstance(top, dict) or "id-token" not in top, f"{name}: id-token granted at the top level"
        oidc_jobs = set(job_using(workflow, "azure/login"))
        for job_name, job in workflow["jobs"].items():
            wants_token = (job.get("permissions") or {}).get("id-token") == "write"
            assert wants_token == (job_name in oidc_jobs), (
                f"{name}: job {job_name}: id-token write {'without' if wants_token else 'missing for'} azure/login"
            )


def test_azure_login_uses_oidc_without_a_secret(workflows: dict):
    found = 0
    for name, workflow in workflows.items():
        for job_name, step in all_steps(workflow):
            if uses_of(step).lower().startswith("azure/login@"):
                found += 1
                inputs = step.get("with") or {}
                assert {"client-id", "tenant-id", "subscription-id"} <= set(inputs), f"{name}/{job_name}: {inputs}"
                assert "creds" not in inputs and "client-secret" not in inputs, f"{name}/{job_name}: secret login"
        text = yaml.safe_dump(workflow)
        assert "ARM_CLIENT_SECRET" not in text and "AZURE_CLIENT_SECRET" not in text, f"{name}: client secret"
    assert found, "no azure/login step anywhere"


def test_every_action_is_pinned_to_a_release_or_commit(workflows: dict):
    for name, workflow in workflows.items():
        references = [uses_of(step) for _, step in all_steps(workflow) if uses_of(step)]
        references += [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
        assert references, f"{name}: uses no action"
        for reference in references:
            if reference.startswith("./"):
                continue
            assert not reference.startswith("docker://") or "@sha256:" in reference, f"{name}: {reference}"
            assert PINNED.match(reference), f"{name}: {reference!r} is not pinned to a version tag or commit SHA"


def test_no_expressions_inside_run_scripts(workflows: dict):
    """Values reach scripts through env: only; `${{ }}` in a script is an injection risk."""
    for name, workflow in workflows.items():
        for job_name, step in all_steps(workflow):
            script = step.get("run") or ""
            found = EXPRESSION.findall(script)
            assert not found, f"{name}/{job_name} step {step.get('name')!r} interpolates {found} into its script"


def test_checkout_does_not_keep_the_token(workflows: dict):
    for name, workflow in workflows.items():
        for job_name, step in all_steps(workflow):
            if uses_of(step).startswith("actions/checkout@"):
                assert (step.get("with") or {}).get("persist-credentials") is False, f"{name}/{job_name}"


# ---------------------------------------------------------------------------------------------
# ci.yml
# ---------------------------------------------------------------------------------------------


def test_ci_runs_on_pull_requests_and_pushes(ci: dict):
    assert "pull_request" in ci["on"] and "push" in ci["on"]


def test_ci_runs_the_test_command(ci: dict):
    jobs = [name for name, job in ci["jobs"].items() if "bash scripts/test" in run_lines(job)]
    assert jobs, "no ci.yml step runs exactly `bash scripts/test`"


def test_ci_caches_cargo_target_and_tools(ci: dict):
    job = next(job for job in ci["jobs"].values() if "bash scripts/test" in run_lines(job))
    caches = [step for step in steps_of(job) if uses_of(step).startswith("actions/cache@")]
    assert caches, "the test job has no actions/cache step"
    paths = "\n".join(str((step.get("with") or {}).get("path", "")) for step in caches)
    keys = " ".join(str((step.get("with") or {}).get("key", "")) for step in caches)
    assert re.search(r"cargo/registry", paths), paths
    assert re.search(r"^target$", paths, re.M), paths
    assert re.search(r"^\.tools$", paths, re.M), paths
    assert "Cargo.lock" in keys and "scripts/install-tools.sh" in keys, keys


def test_ci_validates_terraform_for_real_and_runs_tflint(ci: dict, repo: Path):
    terraform_jobs = job_using(ci, "hashicorp/setup-terraform")
    assert terraform_jobs, "no job sets up Terraform"
    job = ci["jobs"][terraform_jobs[0]]
    lines = run_lines(job)
    init = first_index(lines, r"^terraform init .*-backend=false")
    validate = first_index(lines, r"^terraform validate")
    assert init < validate
    assert any(uses_of(step).startswith("terraform-linters/setup-tflint@") for step in steps_of(job))
    tflint = [line for line in lines if line.startswith("tflint") and "--init" not in line]
    assert tflint, "tflint never runs"
    config = re.search(r"--config[= ]\"?(?:\$GITHUB_WORKSPACE/)?([^\" ]+)", " ".join(tflint))
    assert config, "tflint runs without --config"
    config_text = (repo / config.group(1)).read_text()
    assert re.search(r'plugin\s+"azurerm"', config_text) and "tflint-ruleset-azurerm" in config_text
    assert re.search(r'version\s*=\s*"\d+\.\d+\.\d+"', config_text), "azurerm ruleset version not pinned"


# ---------------------------------------------------------------------------------------------
# deploy.yml
# ---------------------------------------------------------------------------------------------


def test_deploy_triggers(deploy: dict):
    on = deploy["on"]
    assert on["push"]["branches"] == ["main"]
    environment = on["workflow_dispatch"]["inputs"]["environment"]
    assert environment["type"] == "choice"
    assert sorted(environment["options"]) == ["dev", "prod"]


def test_deploy_never_overlaps_or_cancels(deploy: dict):
    concurrency = deploy.get("concurrency")
    assert isinstance(concurrency, dict) and concurrency.get("group"), "deploy.yml needs a concurrency group"
    assert concurrency.get("cancel-in-progress") is False


def test_deploy_job_runs_in_the_chosen_environment(deploy: dict):
    oidc_jobs = job_using(deploy, "azure/login")
    assert oidc_jobs
    for job_name in oidc_jobs:
        environment = deploy["jobs"][job_name].get("environment")
        name = environment.get("name") if isinstance(environment, dict) else environment
        assert name and "inputs.environment" in name, f"job {job_name} environment {environment!r}"


def test_deploy_steps_come_in_order(deploy: dict):
    lines = []
    for job_name in ("build", *[name for name in deploy["jobs"] if name != "build"]):
        lines += run_lines(deploy["jobs"].get(job_name, {}))
    order = [
        r"^bash scripts/package\.sh",
        r"^terraform init",
        r"^phase1=false$",
        r"^terraform plan .*-out.*enable_blob_trigger_subscription=",
        r"^terraform apply .*phase1",
        r"az functionapp deployment source config-zip",
        r"^terraform plan .*-out.*enable_blob_trigger_subscription=true",
        r"^terraform apply .*phase2",
        r"terraform output -raw ansible_inventory_yaml",
        r"ansible-playbook .*monitoring/ansible/site\.yml",
        r"az functionapp keys list",
        r"/api/health",
        r"/api/predict",
        r"az storage blob upload",
        r"/api/models",
    ]
    position = 0
    for pattern in order:  # each one after the one before
        position = first_index(lines, pattern, position) + 1
    assert any("--src dist/sommelier-functions.zip" in line for line in lines)
    assert any(re.search(r"-backend-config=", line) for line in lines)


def test_deploy_smoke_test_fails_the_job(deploy: dict):
    smoke = [step for _, step in all_steps(deploy) if "/api/predict" in (step.get("run") or "")]
    assert len(smoke) == 1
    step = smoke[0]
    assert not step.get("continue-on-error") and "if" not in step
    script = step["run"]
    assert "curl -f" in script and "x-functions-key" in script


def test_deploy_smoke_test_exercises_the_upload_path(deploy: dict):
    (step,) = [step for _, step in all_steps(deploy) if "/api/predict" in (step.get("run") or "")]
    script = step["run"]
    assert "--auth-mode login" in script and '--container-name "$TRAINING_DATA_CONTAINER"' in script
    # It waits for the version trained on its own blob, and fails the job if none comes.
    assert '"$APP_URL/api/models"' in script and 'v.get("source") == sys.argv[1]' in script
    assert '::error::no model version trained on' in script and script.rstrip().endswith("exit 1")


def test_deploy_pins_the_monitoring_host_key(deploy: dict):
    text = "\n".join(line for _, step in all_steps(deploy) for line in (step.get("run") or "").splitlines())
    assert "terraform output -raw monitoring_ssh_known_hosts" in text
    (ansible,) = [step for _, step in all_steps(deploy) if "ansible-playbook" in (step.get("run") or "")]
    args = ansible["env"]["ANSIBLE_SSH_ARGS"]
    assert "StrictHostKeyChecking=yes" in args and "UserKnownHostsFile=${{ runner.temp }}/known_hosts" in args
    assert "accept-new" not in args and "/dev/null" not in args


def test_deploy_leaves_the_storage_setting_removal_to_terraform(deploy: dict):
    # Every terraform apply deletes the injected AzureWebJobsStorage (terraform_data), with the
    # Azure CLI of this job: the workflow logs in before any apply and calls no removal itself.
    lines = run_lines(deploy["jobs"][job_using(deploy, "azure/login")[0]])
    assert not [line for line in lines if "appsettings delete" in line]


def terraform_variables(repo: Path) -> dict:
    """Variable name -> whether it has a default, from terraform/*.tf."""
    hcl2 = pytest.importorskip("hcl2")
    variables = {}
    for path in sorted((repo / "terraform").glob("*.tf")):
        with path.open() as handle:
            document = hcl2.load(handle)
        for block in document.get("variable", []):
            for name, body in block.items():
                variables[name.strip('"')] = "default" in body
    return variables


def test_deploy_passes_every_required_terraform_variable(deploy: dict, repo: Path):
    if not (repo / "terraform" / "variables.tf").exists():
        pytest.skip("terraform/variables.tf not written yet")
    variables = terraform_variables(repo)
    job = deploy["jobs"][job_using(deploy, "azure/login")[0]]
    passed = {key[len("TF_VAR_"):] for key in (job.get("env") or {}) if key.startswith("TF_VAR_")}
    unknown = passed - set(variables)
    assert not unknown, f"deploy.yml sets TF_VAR_ for undeclared variables: {sorted(unknown)}"
    required = {name for name, has_default in variables.items() if not has_default}
    missing = required - passed - {"enable_blob_trigger_subscription"}
    assert not missing, f"deploy.yml does not pass required variables: {sorted(missing)}"
    for name in ("prefix", "environment", "location", "admin_cidrs"):
        assert name in passed, f"TF_VAR_{name} not set"


def test_deploy_reads_outputs_that_terraform_declares(deploy: dict, repo: Path):
    outputs_tf = repo / "terraform" / "outputs.tf"
    if not outputs_tf.exists():
        pytest.skip("terraform/outputs.tf not written yet")
    declared = set(re.findall(r'^output\s+"([^"]+)"', outputs_tf.read_text(), re.M))
    used = set()
    for _, step in all_steps(deploy):
        script = step.get("run") or ""
        for name in re.findall(r"terraform output -raw ([A-Za-z0-9_]+)( 2>/dev/null)?", script):
            if not name[1]:  # outputs read with a fallback are optional
                used.add(name[0])
    assert used, "deploy.yml reads no Terraform output"
    assert used <= declared, f"outputs not declared in terraform/outputs.tf: {sorted(used - declared)}"
