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

# owner/repo[/path]@ref, where ref is a full commit SHA (a tag can be moved; a commit cannot).
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}$")
# The `uses:` line as written: the commit, then the release it is, as a comment.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(?:\s+#\s*(\S+))?\s*$")
RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
# Jobs that sign something hold an OIDC token: Azure logins, and build provenance attestations.
OIDC_ACTIONS = ("azure/login", "actions/attest-build-provenance")
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


# What checkov's workflow schema (checkov 3.3.30) does not know yet, although GitHub does: a
# workflow holding one of these is skipped whole, silently. The copy checkov reads has each such
# line replaced by a comment (so line numbers and inline skips stay where they are).
CHECKOV_SCHEMA_GAPS = (
    (re.compile(r"^(\s*)attestations: (?:read|write)\s*$", re.M), r"\1# attestations permission"),
    (re.compile(r"^(\s*)cancel-in-progress: \$\{\{.*\}\}\s*$", re.M), r"\1cancel-in-progress: true"),
)


def test_checkov_github_actions_has_no_failures(repo: Path, tool, tool_env: dict, tmp_path: Path):
    checkov = tool("checkov")
    copy = tmp_path / ".github"
    shutil.copytree(repo / ".github", copy)
    for path in sorted((copy / "workflows").glob("*.y*ml")):
        text = path.read_text()
        for pattern, replacement in CHECKOV_SCHEMA_GAPS:
            text = pattern.sub(replacement, text)
        path.write_text(text)
    result = subprocess.run(
        [checkov, "-d", str(copy), "--framework", "github_actions", "--skip-download", "--compact"],
        cwd=repo, env=tool_env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"checkov reported failures:\n{output}"
    counts = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", output)
    assert counts, f"checkov printed no summary (did it scan anything?):\n{output}"
    assert int(counts.group(1)) > 0 and int(counts.group(2)) == 0, output
    for name in WORKFLOWS:  # a workflow checkov cannot read yields no result at all
        assert f"File: /workflows/{name}:" in output, f"checkov did not scan {name}:\n{output[-3000:]}"


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
            allowed = {"id-token"}
            if job_name in job_using(workflow, "actions/attest-build-provenance"):
                allowed.add("attestations")  # stores the attestation it signs, nothing else
            assert writes <= allowed, f"{name}: job {job_name} writes {sorted(writes)}"


def test_id_token_write_only_where_azure_login_or_an_attestation_is_used(workflows: dict):
    for name, workflow in workflows.items():
        top = workflow.get("permissions")
        assert not isinstance(top, dict) or "id-token" not in top, f"{name}: id-token granted at the top level"
        oidc_jobs = {job for action in OIDC_ACTIONS for job in job_using(workflow, action)}
        for job_name, job in workflow["jobs"].items():
            wants_token = (job.get("permissions") or {}).get("id-token") == "write"
            assert wants_token == (job_name in oidc_jobs), (
                f"{name}: job {job_name}: id-token write {'without' if wants_token else 'missing for'} "
                f"{' or '.join(OIDC_ACTIONS)}"
            )


def test_the_build_job_holds_no_cloud_credential(deploy: dict):
    """The job that signs the provenance builds the package; it never logs in to Azure."""
    attesting = set(job_using(deploy, "actions/attest-build-provenance"))
    assert attesting, "deploy.yml attests nothing"
    assert not attesting & set(job_using(deploy, "azure/login"))
    for job_name in attesting:
        assert "environment" not in deploy["jobs"][job_name], f"{job_name} runs in an environment with secrets"


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


def test_every_action_is_pinned_to_a_commit_with_its_release_in_a_comment(workflow_dir: Path):
    """`uses: owner/repo@<40 hex>  # vX.Y.Z`: the commit is what runs, the comment what it is.
    Every use of one action names the same commit (Dependabot moves them together)."""
    commits: dict = {}
    for path in sorted(workflow_dir.glob("*.y*ml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES_LINE.match(line)
            if not match or match.group(1).startswith("./"):
                continue
            reference, tag = match.groups()
            assert PINNED.match(reference), f"{path.name}:{number}: {reference!r} is not pinned to a full commit"
            assert tag and RELEASE_TAG.match(tag), f"{path.name}:{number}: no `# vX.Y.Z` comment after {reference}"
            action, commit = reference.split("@")
            commits.setdefault(action.lower(), set()).add((commit, tag))
    assert commits, "no action is used"
    for action, pins in commits.items():
        assert len(pins) == 1, f"{action} is pinned to different commits: {sorted(pins)}"


def test_every_action_reference_is_pinned(workflows: dict):
    for name, workflow in workflows.items():
        references = [uses_of(step) for _, step in all_steps(workflow) if uses_of(step)]
        references += [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
        assert references, f"{name}: uses no action"
        for reference in references:
            if reference.startswith("./"):
                continue
            assert not reference.startswith("docker://") or "@sha256:" in reference, f"{name}: {reference}"
            assert PINNED.match(reference), f"{name}: {reference!r} is not pinned to a full commit SHA"


def test_no_expressions_inside_run_scripts(workflows: dict):
    """Values reach scripts through env: only; `${{ }}` in a script is an injection risk."""
    for name, workflow in workflows.items():
        for job_name, step in all_steps(workflow):
            script = step.get("run") or ""
            found = EXPRESSION.findall(script)
            assert not found, f"{name}/{job_name} step {step.get('name')!r} interpolates {found} into its script"


def test_no_command_substitution_hides_inside_echo(workflows: dict):
    """`echo "x=$(cmd)"` succeeds when cmd fails (set -e does not see it): values are read
    into a variable first."""
    pattern = re.compile(r'\becho\s+"[^"\n]*\$\(')
    for name, workflow in workflows.items():
        for job_name, step in all_steps(workflow):
            found = pattern.findall(step.get("run") or "")
            assert not found, f"{name}/{job_name} step {step.get('name')!r}: {found}"


def test_the_smoke_test_outlasts_its_waits(deploy: dict):
    """A storage token is taken before the long waits, and unresolved Key Vault references
    (named by /api/health) are given restarts before the step fails."""
    (smoke,) = [step for _, step in all_steps(deploy) if str(step.get("name", "")).startswith("Smoke test")]
    script = smoke["run"]
    token = script.index("az account get-access-token --resource https://storage.azure.com/")
    assert token < script.index("wait_healthy 30\n")
    assert "grep -q 'Key Vault reference' health.json" in script
    assert "az functionapp restart" in script
    # Its waits fit in the step's time: 5 min of health, 3 restarts of about 4 min, 10 min for
    # the upload's report, and a margin.
    assert "for restart in 1 2 3 4; do" in script and "wait_healthy 12" in script
    assert smoke["timeout-minutes"] >= 5 + 3 * 4 + 10 + 5


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
        r"az keyvault secret show",
        r"az functionapp function keys set",
        r"^terraform plan .*-out.*enable_blob_trigger_subscription=true",
        r"^terraform apply .*phase2",
        r"terraform output -raw ansible_inventory_yaml",
        r"ansible-playbook .*monitoring/ansible/site\.yml",
        r"az keyvault secret show",
        r"/api/health",
        r"/api/predict",
        r"/api/feedback",
        r"az storage blob upload",
        r"--file checked\.json",
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
    # A deployment check: under checks/, so nothing is stored or promoted and the timer never
    # trains on it; the job waits for the report beside it and fails if none comes or it did
    # not pass; both blobs are removed however the step ends.
    assert 'blob="checks/smoke-${RUN_ID}-${RUN_ATTEMPT}.csv"' in script
    assert 'report="${blob}.checked.json"' in script and 'report.get("status") == "checked"' in script
    assert "trap remove_check EXIT" in script and "az storage blob delete" in script
    assert '"$APP_URL/api/models"' not in script
    assert '::error::no report on' in script and script.rstrip().endswith("exit 1")


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


# ---------------------------------------------------------------------------------------------
# deploy.yml on a first real deploy: fresh logins, time limits, retries (issue 36)
# ---------------------------------------------------------------------------------------------

# The Azure CLI session azure/login leaves behind is not refreshed: its access token lasts about
# an hour (the GitHub OIDC token it was exchanged for expires within minutes). The steps between
# a login and the last az call relying on it may take at most this long, by their time limits.
LOGIN_BUDGET_MINUTES = 45
AZ_CALL = re.compile(r"(?:^|[\s;&|(!])az\s+[a-z]", re.M)
WAITS_OR_DEPLOYS = re.compile(r"\bsleep\b|config-zip|terraform (?:init|plan|apply)|ansible-playbook|\baz\s+[a-z]")


def deploy_job(deploy: dict) -> dict:
    return deploy["jobs"][job_using(deploy, "azure/login")[0]]


def is_login(step: dict) -> bool:
    return uses_of(step).lower().startswith("azure/login@")


def uses_azure_cli(step: dict) -> bool:
    """Runs az itself, or a terraform apply (whose local-exec runs az at its end)."""
    script = step.get("run") or ""
    return bool(AZ_CALL.search(script)) or "terraform apply" in script


def test_deploy_logs_in_again_before_each_group_of_az_calls(deploy: dict):
    steps = steps_of(deploy_job(deploy))
    logins = [index for index, step in enumerate(steps) if is_login(step)]
    assert len(logins) > 1, "deploy.yml logs in to Azure once for the whole job"
    groups = 0
    for index, step in enumerate(steps):
        if not uses_azure_cli(step):
            continue
        groups += 1
        earlier = [login for login in logins if login < index]
        assert earlier, f"step {step['name']!r} runs az before any azure/login"
        login = steps[earlier[-1]]
        since = steps[earlier[-1] + 1:index + 1]
        untimed = [s["name"] for s in since if "timeout-minutes" not in s]
        assert not untimed, f"steps between the login and {step['name']!r} have no time limit: {untimed}"
        minutes = sum(int(s["timeout-minutes"]) for s in since)
        assert minutes <= LOGIN_BUDGET_MINUTES, (
            f"{step['name']!r} may run {minutes} minutes after its login ({login['name']!r}): the session may have expired"
        )
        if "always()" in str(step.get("if", "")):
            # A clean-up step runs whatever failed before: so does its login, which may fail alone.
            assert "always()" in str(login.get("if", "")), f"the login before {step['name']!r} is skipped after a failure"
            assert login.get("continue-on-error") is True, f"a failed login before {step['name']!r} would stop it"
    # phase 1 apply, the state check, the package, phase 2, opening and closing SSH, the smoke test
    assert groups >= 7, groups


def test_every_step_that_waits_or_deploys_has_a_time_limit(deploy: dict):
    for job_name, job in deploy["jobs"].items():
        for step in steps_of(job):
            if WAITS_OR_DEPLOYS.search(step.get("run") or ""):
                limit = step.get("timeout-minutes")
                assert isinstance(limit, int) and 0 < limit <= job["timeout-minutes"], (
                    f"{job_name}: step {step.get('name')!r} waits or deploys without a time limit"
                )


def step_running(deploy: dict, text: str) -> dict:
    (step,) = [step for step in steps_of(deploy_job(deploy)) if text in (step.get("run") or "")]
    return step


STAND_IN_AZ = r'''#!/usr/bin/env python3
"""Stand-in for the Azure CLI: logs its arguments, answers from a plan (one list of answers per
command, consumed in order; the last one repeats)."""
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
plan = json.load(open(os.environ["AZ_PLAN"]))
for key, answers in plan.items():
    if args[:len(key.split())] == key.split():
        state = os.environ["AZ_LOG"] + "." + key.replace(" ", "_")
        count = int(open(state).read()) if os.path.exists(state) else 0
        open(state, "w").write(str(count + 1))
        answer = answers[min(count, len(answers) - 1)]
        time.sleep(answer.get("sleep", 0))
        sys.stdout.write(answer.get("out", ""))
        sys.stderr.write(answer.get("err", ""))
        sys.exit(answer.get("code", 0))
sys.exit(0)
'''

STAND_IN_CURL = r'''#!/usr/bin/env bash
# Stand-in for curl: the GitHub OIDC token endpoint, and nothing else.
printf '%s\n' "$*" >> "$CURL_LOG"
printf '{"value": "oidc-token-for-test"}'
'''


def run_step(step: dict, tmp_path: Path, plan: dict, **env) -> tuple[subprocess.CompletedProcess, list]:
    """Runs a step's script as GitHub does (bash -eo pipefail) with stand-ins for az and curl."""
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("az", STAND_IN_AZ), ("curl", STAND_IN_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "step.sh").write_text(step["run"])
    literal = {k: str(v) for k, v in (step.get("env") or {}).items() if "${{" not in str(v)}
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
        "AZ_LOG": str(tmp_path / "az.log"), "AZ_PLAN": str(tmp_path / "plan.json"), "CURL_LOG": str(tmp_path / "curl.log"),
        "ARM_CLIENT_ID": "client", "ARM_TENANT_ID": "tenant", "ARM_SUBSCRIPTION_ID": "subscription",
        **literal, **env,
    }
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    log = tmp_path / "az.log"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


FORBIDDEN_WHILE_ROLE_PROPAGATES = {
    "code": 1,
    "err": "ERROR: Status Code: 400, Details: Failed to upload the package: (AuthorizationPermissionMismatch) "
           "This request is not authorized to perform this operation using this permission. (403)\n",
}
UNHEALTHY = {"code": 1, "err": "ERROR: Deployment was successful but the app appears to be unhealthy, please check the app logs.\n"}
DEPLOY_ENV = {"RESOURCE_GROUP": "rg", "FUNCTION_APP": "app", "RETRY_PAUSE_SECONDS": "0"}


def config_zip_calls(calls: list) -> int:
    return sum(1 for call in calls if call[:4] == ["functionapp", "deployment", "source", "config-zip"])


def test_package_deploy_retries_while_the_storage_role_propagates(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "config-zip")
    plan = {"functionapp deployment source config-zip": [FORBIDDEN_WHILE_ROLE_PROPAGATES, FORBIDDEN_WHILE_ROLE_PROPAGATES, {}]}
    result, calls = run_step(step, tmp_path, plan, **DEPLOY_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls[0] == ["version", "--output", "json"], "az version is not printed first"
    assert config_zip_calls(calls) == 3
    assert int(step["env"]["ATTEMPTS"]) > 1 and int(step["env"]["RETRY_PAUSE_SECONDS"]) > 0


def test_package_deploy_gives_up_after_its_attempts(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "config-zip")
    result, calls = run_step(step, tmp_path, {"functionapp deployment source config-zip": [FORBIDDEN_WHILE_ROLE_PROPAGATES]},
                             **DEPLOY_ENV)
    assert result.returncode != 0
    assert config_zip_calls(calls) == int(step["env"]["ATTEMPTS"])


def test_package_deploy_fails_at_once_on_other_errors(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "config-zip")
    plan = {"functionapp deployment source config-zip": [{"code": 3, "err": "ERROR: (ResourceNotFound) The Resource 'app' was not found.\n"}]}
    result, calls = run_step(step, tmp_path, plan, **DEPLOY_ENV)
    assert result.returncode != 0 and config_zip_calls(calls) == 1


def test_package_deploy_leaves_an_unhealthy_start_to_the_health_wait(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "config-zip")
    result, calls = run_step(step, tmp_path, {"functionapp deployment source config-zip": [UNHEALTHY]}, **DEPLOY_ENV)
    assert result.returncode == 0 and config_zip_calls(calls) == 1
    assert "::warning::" in result.stdout
    # The health wait comes next and decides.
    steps = steps_of(deploy_job(deploy))
    following = steps[steps.index(step) + 1:]
    assert any("/api/health" in (s.get("run") or "") for s in following[:2])


def test_package_deploy_bounds_each_attempt(deploy: dict, tmp_path: Path):
    # An older CLI never returns from its health check: each attempt is cut off and retried.
    step = step_running(deploy, "config-zip")
    plan = {"functionapp deployment source config-zip": [{"sleep": 30}]}
    result, calls = run_step(step, tmp_path, plan, **DEPLOY_ENV, ATTEMPTS="2", ATTEMPT_SECONDS="1")
    assert result.returncode != 0 and config_zip_calls(calls) == 2
    attempts, seconds = int(step["env"]["ATTEMPTS"]), int(step["env"]["ATTEMPT_SECONDS"])
    pause = int(step["env"]["RETRY_PAUSE_SECONDS"])
    assert attempts * seconds + (attempts - 1) * pause < step["timeout-minutes"] * 60


def test_closing_ssh_logs_in_again_when_the_session_expired(deploy: dict, tmp_path: Path):
    (step,) = [s for s in steps_of(deploy_job(deploy)) if "nsg rule delete" in (s.get("run") or "")]
    assert "always()" in step["if"]
    expired = {"code": 1, "err": "ERROR: AADSTS700024: Client assertion is not within its valid time range.\n"}
    plan = {"network nsg rule delete": [expired, {}], "login": [{}], "account set": [{}]}
    result, calls = run_step(step, tmp_path, plan, RESOURCE_GROUP="rg", NSG="nsg", RULE="gha-ansible-1",
                             RETRY_PAUSE_SECONDS="0", ACTIONS_ID_TOKEN_REQUEST_URL="https://token.example/?x=1",
                             ACTIONS_ID_TOKEN_REQUEST_TOKEN="request-token")
    assert result.returncode == 0, result.stdout + result.stderr
    verbs = [" ".join(call[:4]) for call in calls]
    assert verbs[0].startswith("network nsg rule delete") and verbs[-1].startswith("network nsg rule delete")
    (login,) = [call for call in calls if call[0] == "login"]
    assert login[login.index("--federated-token") + 1] == "oidc-token-for-test"
    assert login[login.index("--username") + 1] == "client" and "--service-principal" in login
    assert "audience=api://AzureADTokenExchange" in (tmp_path / "curl.log").read_text()


def test_closing_ssh_fails_loudly_when_the_rule_stays(deploy: dict, tmp_path: Path):
    (step,) = [s for s in steps_of(deploy_job(deploy)) if "nsg rule delete" in (s.get("run") or "")]
    plan = {"network nsg rule delete": [{"code": 1, "err": "ERROR: AADSTS700024\n"}], "login": [{"code": 1}]}
    result, _ = run_step(step, tmp_path, plan, RESOURCE_GROUP="rg", NSG="nsg", RULE="r", RETRY_PAUSE_SECONDS="0",
                         ACTIONS_ID_TOKEN_REQUEST_URL="https://token.example/?x=1", ACTIONS_ID_TOKEN_REQUEST_TOKEN="t")
    assert result.returncode != 0
    assert "::error::port 22 is still open" in result.stdout


def test_state_access_is_checked_before_terraform_init(deploy: dict, tmp_path: Path):
    steps = steps_of(deploy_job(deploy))
    check = step_running(deploy, "az storage blob list")
    init = next(s for s in steps if (s.get("run") or "").lstrip().startswith(("terraform init", "#")) and "terraform init" in s["run"])
    assert steps.index(check) < steps.index(init)
    env = {"TF_STATE_STORAGE_ACCOUNT": "sttfstate", "TF_STATE_CONTAINER": "tfstate"}
    denied = {"code": 1, "err": "ERROR: You do not have the required permissions needed to perform this operation.\n"
                                "ErrorCode:AuthorizationPermissionMismatch\n"}
    result, calls = run_step(check, tmp_path, {"storage blob list": [denied]}, **env)
    assert result.returncode != 0
    assert "::error::" in result.stdout and "Storage Blob Data Contributor" in result.stdout
    listing = next(call for call in calls if call[:3] == ["storage", "blob", "list"])
    assert "--auth-mode" in listing and listing[listing.index("--auth-mode") + 1] == "login"
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    result, _ = run_step(check, allowed, {"storage blob list": [{}]}, **env)
    assert result.returncode == 0, result.stdout + result.stderr


def markdown_section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def test_bootstrap_names_the_state_data_role_the_backend_needs(deploy: dict, repo: Path):
    # With Entra ID auth on the backend, the state is read and locked with the principal's data
    # role on the container: Contributor (a management role) does not reach blobs.
    versions = (repo / "terraform" / "versions.tf").read_text()
    assert re.search(r'backend\s+"azurerm"', versions)
    lines = run_lines(deploy_job(deploy))
    init_flags = " ".join(lines[first_index(lines, r"terraform init"):])
    readme = (repo / "terraform" / "README.md").read_text()
    entra_id = '-backend-config="use_azuread_auth=true"' in init_flags or re.search(r"use_azuread_auth\s*=\s*true", readme)
    assert entra_id, "the backend no longer uses Entra ID: revisit this check"
    bootstrap = markdown_section(readme, "Bootstrap")
    assert "Storage Blob Data Contributor" in bootstrap
    assert re.search(r'--role "Storage Blob Data Contributor"[^\n]*\\\n[^\n]*/blobServices/default/containers/', bootstrap), (
        "the bootstrap does not assign the data role on the state container"
    )
    # The container and account the bootstrap creates are the ones the backend example uses.
    backend = dict(re.findall(r'^(\w+)\s*=\s*"([^"]+)"', markdown_section(readme, "Remote state"), re.M))
    assert f"-n {backend['storage_account_name']} " in bootstrap and f"-n {backend['container_name']}" in bootstrap
    header = "\n".join(line for line in (repo / ".github" / "workflows" / "deploy.yml").read_text().splitlines()
                       if line.startswith("#"))
    assert "Storage Blob Data" in header and "Contributor on the state container" in " ".join(header.replace("#", " ").split())


# ---------------------------------------------------------------------------------------------
# The feedback function's own key (issue 31): labels steer retraining
# ---------------------------------------------------------------------------------------------

KEYS_ENV = {"RESOURCE_GROUP": "rg", "FUNCTION_APP": "app", "KEY_VAULT": "kv", "CLIENT_KEY_SECRET": "client-secret",
            "FEEDBACK_KEY_SECRET": "feedback-secret", "RETRY_PAUSE_SECONDS": "0"}
KEY_ANSWERS = {"keyvault secret show --vault-name kv --name client-secret": [{"out": "client-key-value\n"}],
               "keyvault secret show --vault-name kv --name feedback-secret": [{"out": "feedback-key-value\n"}]}


def key_sets(calls: list) -> dict:
    """function name -> (key name, key value) of each `az functionapp function keys set`."""
    sets = {}
    for call in calls:
        if call[:4] == ["functionapp", "function", "keys", "set"]:
            option = {call[i]: call[i + 1] for i in range(4, len(call) - 1) if call[i].startswith("--")}
            sets[option["--function-name"]] = (option["--key-name"], option["--key-value"])
    return sets


def test_the_feedback_function_gets_a_key_the_prediction_clients_do_not_hold(deploy: dict, repo: Path, tmp_path: Path):
    step = step_running(deploy, "az functionapp function keys set")
    result, calls = run_step(step, tmp_path, KEY_ANSWERS, **KEYS_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    sets = key_sets(calls)
    assert sets["feedback"] == ("labelling", "feedback-key-value")
    for function in ("predict", "invocations", "explain", "models"):
        assert sets[function] == ("clients", "client-key-value")
    assert "::add-mask::client-key-value" in result.stdout and "::add-mask::feedback-key-value" in result.stdout
    # Every function the clients' key opens exists with authLevel function; feedback is one too.
    for function in sets:
        binding = yaml.safe_load((repo / "functions" / function / "function.json").read_text())["bindings"][0]
        assert binding["authLevel"] == "function", function


def test_setting_the_function_keys_retries_then_gives_up(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "az functionapp function keys set")
    flaky = {**KEY_ANSWERS, "functionapp function keys set": [{"code": 1, "err": "ERROR: (NotFound) function\n"}, {}]}
    result, calls = run_step(step, tmp_path, flaky, **KEYS_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(key_sets(calls)) == 5
    broken = {**KEY_ANSWERS, "functionapp function keys set": [{"code": 1, "err": "ERROR: (NotFound) function\n"}]}
    (tmp_path / "broken").mkdir()
    result, calls = run_step(step, tmp_path / "broken", broken, **KEYS_ENV)
    assert result.returncode != 0
    assert sum(1 for c in calls if c[:4] == ["functionapp", "function", "keys", "set"]) == int(step["env"]["ATTEMPTS"])


def test_setting_the_function_keys_refuses_one_key_for_both(deploy: dict, tmp_path: Path):
    step = step_running(deploy, "az functionapp function keys set")
    same = {"keyvault secret show": [{"out": "same-value\n"}]}
    result, calls = run_step(step, tmp_path, same, **KEYS_ENV)
    assert result.returncode != 0 and not key_sets(calls)
