#!/usr/bin/env bash
# Builds the deployable Azure Functions package: a zip with
#
#   host.json              the host configuration, at the zip root
#   <name>/function.json   one folder per function, from functions/<name>/function.json
#   sommelier              the custom handler: a static x86_64 Linux (musl) executable, mode 0755
#
# and nothing else (no local.settings.json, no directory entries). Beside the zip it writes
# its bill of materials, <name>.cdx.json for <name>.zip: a CycloneDX SBOM of every crate the
# executable is built from (scripts/sbom.py). The executable itself carries its dependency
# list too (built with `cargo auditable`), so a deployed binary can be audited on its own:
#   cargo audit bin sommelier
#
# Usage:
#   scripts/package.sh [--binary PATH] [--out PATH] [--no-install] [--check]
#
#   --binary PATH  pack this executable instead of building one (default: cargo auditable
#                  build --release --locked --target x86_64-unknown-linux-musl)
#   --out PATH     where to write the zip (default: dist/sommelier-functions.zip; the SBOM
#                  goes beside it)
#   --no-install   never install a missing prerequisite: stop and say what to run
#   --check        only check (and install) the prerequisites, build nothing
#
# The build needs cargo, the musl target, cargo-auditable, a musl C compiler (for the TLS
# stack's C code; musl-gcc from Debian/Ubuntu's musl-tools, or $CC_x86_64_unknown_linux_musl)
# and python3 3.11 or newer (writes the zip and the SBOM; the SBOM needs cargo even with
# --binary). The script adds the musl target with rustup, installs cargo-auditable with cargo,
# and installs musl-tools and python3 with apt-get when it runs as root; otherwise it stops and
# prints the exact commands:
#   rustup target add x86_64-unknown-linux-musl
#   cargo install --locked --version 0.7.7 cargo-auditable
#   sudo apt-get install musl-tools python3
#
# The zip is reproducible: entries sorted by name, every timestamp fixed at
# 1980-01-01 00:00:00, Unix modes stored explicitly (0755 for the executable,
# 0644 for the JSON files), deflate at level 9. Packing the same inputs twice
# gives identical bytes, and so does the SBOM (no timestamp, sorted).
#
# Deploy it to the Flex Consumption app with
#   az functionapp deployment source config-zip --src dist/sommelier-functions.zip -g <resource group> -n <app>
set -euo pipefail
caller_dir="$PWD"
cd "$(dirname "$0")/.."

TARGET="x86_64-unknown-linux-musl"
EXECUTABLE="sommelier"
CARGO_AUDITABLE_VERSION="0.7.7"

usage() {
  sed -n '/^# Usage:/,/^#   --check/p' "$0" | sed 's/^# \{0,1\}//' >&2
}

die() {
  printf 'package: %s\n' "$*" >&2
  exit 1
}

binary=""
out=""
install=yes
check_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary)
      [ $# -ge 2 ] || die "--binary needs a path"
      binary="$2"
      shift 2
      ;;
    --binary=*)
      binary="${1#--binary=}"
      shift
      ;;
    --out)
      [ $# -ge 2 ] || die "--out needs a path"
      out="$2"
      shift 2
      ;;
    --out=*)
      out="${1#--out=}"
      shift
      ;;
    --no-install)
      install=""
      shift
      ;;
    --check)
      check_only=yes
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage
      die "unknown argument: $1"
      ;;
  esac
done

# Paths given on the command line are relative to where the command was run.
absolute() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$caller_dir" "$1" ;;
  esac
}
[ -z "$binary" ] || binary="$(absolute "$binary")"
if [ -z "$out" ]; then out="dist/sommelier-functions.zip"; else out="$(absolute "$out")"; fi
sbom="${out%.zip}.cdx.json"

# Installs a Debian/Ubuntu package when allowed and possible (root with apt-get); else false.
apt_install() {
  [ -n "$install" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null || return 1
  printf 'package: apt-get install %s\n' "$*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Whether the standard library for the musl target is there (rustup or a distribution package).
musl_target_installed() {
  local libdir
  libdir="$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)" || return 1
  [ -d "$libdir" ] && [ -n "$(ls -A "$libdir")" ]
}

# Whether cargo-auditable is installed at the pinned version.
cargo_auditable_installed() {
  cargo install --list 2>/dev/null | grep -qx "cargo-auditable v$CARGO_AUDITABLE_VERSION:"
}

# Checks what the build needs, installs what it can, and says exactly what to run otherwise.
ensure_prerequisites() {
  local need_build="$1" sudo="sudo " problems=()
  [ "$(id -u)" -ne 0 ] || sudo=""
  if ! command -v python3 >/dev/null && ! apt_install python3; then
    problems+=("python3 is missing: run  ${sudo}apt-get install python3")
  fi
  if ! command -v cargo >/dev/null; then
    problems+=("cargo is missing: install the Rust toolchain with rustup, then run  rustup target add $TARGET")
  elif [ -n "$need_build" ]; then
    if ! cargo_auditable_installed; then
      local install_auditable="cargo install --locked --version $CARGO_AUDITABLE_VERSION cargo-auditable"
      if [ -n "$install" ]; then
        printf 'package: %s\n' "$install_auditable" >&2
        $install_auditable >&2 || problems+=("cargo-auditable could not be installed: run  $install_auditable")
      else
        problems+=("cargo-auditable $CARGO_AUDITABLE_VERSION is not installed: run  $install_auditable")
      fi
    fi
    if ! musl_target_installed; then
      if [ -n "$install" ] && command -v rustup >/dev/null; then
        printf 'package: rustup target add %s\n' "$TARGET" >&2
        rustup target add "$TARGET" >&2 || problems+=("the Rust target $TARGET could not be added: run  rustup target add $TARGET")
      else
        problems+=("the Rust target $TARGET is not installed: run  rustup target add $TARGET")
      fi
    fi
    local cc="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
    if ! command -v "$cc" >/dev/null; then
      if [ "$cc" != "musl-gcc" ] || ! apt_install musl-tools; then
        problems+=("the musl C compiler $cc is missing: run  ${sudo}apt-get install musl-tools")
      fi
    fi
  fi
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'package: %s\n' "${problems[@]}" >&2
    exit 1
  fi
}

need_build=""
[ -n "$binary" ] || need_build=yes
ensure_prerequisites "$need_build"
if [ -n "$check_only" ]; then
  printf 'package: prerequisites are in place\n' >&2
  exit 0
fi

if [ -z "$binary" ]; then
  # cargo auditable embeds the dependency list in the executable (a `.dep-v0` section); the
  # code is compiled exactly as by cargo build.
  printf 'package: cargo auditable build --release --locked --target %s\n' "$TARGET" >&2
  cargo auditable build --release --locked --target "$TARGET" --bin "$EXECUTABLE"
  binary="target/$TARGET/release/$EXECUTABLE"
fi
[ -f "$binary" ] || die "no executable at $binary"
[ -f host.json ] || die "host.json is missing"

mkdir -p "$(dirname "$out")"
python3 - "$binary" "$out" "$EXECUTABLE" <<'PY'
"""Writes the package zip deterministically (see the header of scripts/package.sh)."""

import json
import os
import sys
import zipfile
from pathlib import Path

binary, out, executable = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def fail(message: str) -> None:
    sys.exit(f"package: {message}")


def read_json(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        json.loads(data)
    except ValueError as err:
        fail(f"{path} is not valid JSON: {err}")
    return data


host = read_json(Path("host.json"))
declared = json.loads(host).get("customHandler", {}).get("description", {}).get("defaultExecutablePath")
if declared != executable:
    fail(f"host.json names the executable {declared!r}, the package ships {executable!r}")

entries = {"host.json": (host, 0o644)}
functions = sorted(p for p in Path("functions").glob("*/function.json"))
if not functions:
    fail("no functions/*/function.json found")
for path in functions:
    entries[f"{path.parent.name}/function.json"] = (read_json(path), 0o644)
entries[executable] = (binary.read_bytes(), 0o755)

tmp = out.with_name(out.name + ".tmp")
with zipfile.ZipFile(tmp, "w") as archive:
    for name in sorted(entries):
        data, mode = entries[name]
        info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
        info.create_system = 3  # Unix, so that the mode bits below are honoured
        info.external_attr = (0o100000 | mode) << 16  # regular file + permissions
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
os.replace(tmp, out)
print(f"package: wrote {out} ({out.stat().st_size} bytes, {len(entries)} entries)", file=sys.stderr)
PY

python3 scripts/sbom.py --target "$TARGET" --bin "$EXECUTABLE" --out "$sbom"
