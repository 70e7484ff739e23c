"""Shared fixtures for the infrastructure checks: where the repository is and where the tools are."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"


def find_tool(name: str) -> str:
    """Finds a checker installed by scripts/install-tools.sh, else on PATH; fails the test if absent."""
    for candidate in (TOOLS / "venv" / "bin" / name, TOOLS / "node" / "node_modules" / ".bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/install-tools.sh")
    return found


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool():
    return find_tool


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """Environment for child processes: the tool venv first on PATH, no telemetry or update checks."""
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS / 'venv' / 'bin'}:{env.get('PATH', '')}"
    env["CHECKPOINT_DISABLE"] = "1"
    env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env
