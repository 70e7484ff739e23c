#!/usr/bin/env bash
# Builds the deployable Azure Functions package: a zip with
#
#   host.json              the host configuration, at the zip root
#   <name>/function.json   one folder per function, from functions/<name>/function.json
#   sommelier              the custom handler: a static x86_64 Linux (musl) executable, mode 0755
#
# and nothing else (no local.settings.json, no directory entries).
#
# Usage:
#   scripts/package.sh [--binary PATH] [--out PATH]
#
#   --binary PATH  pack this executable instead of building one
#                  (default: cargo build --release --locked --target x86_64-unknown-linux-musl)
#   --out PATH     where to write the zip (default: dist/sommelier-functions.zip)
#
# The build needs the musl target and a musl C compiler (for the TLS stack's C code):
#   rustup target add x86_64-unknown-linux-musl
#   apt-get install musl-tools
#
# The zip is reproducible: entries sorted by name, every timestamp fixed at
# 1980-01-01 00:00:00, Unix modes stored explicitly (0755 for the executable,
# 0644 for the JSON files), deflate at level 9. Packing the same inputs twice
# gives identical bytes.
#
# Deploy it to the Flex Consumption app with
#   az functionapp deployment source config-zip --src dist/sommelier-functions.zip -g <resource group> -n <app>
set -euo pipefail
caller_dir="$PWD"
cd "$(dirname "$0")/.."

TARGET="x86_64-unknown-linux-musl"
EXECUTABLE="sommelier"

usage() {
  sed -n '10,15p' "$0" | sed 's/^# \{0,1\}//' >&2
}

die() {
  printf 'package: %s\n' "$*" >&2
  exit 1
}

binary=""
out=""
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

if [ -z "$binary" ]; then
  printf 'package: cargo build --release --locked --target %s\n' "$TARGET" >&2
  cargo build --release --locked --target "$TARGET" --bin "$EXECUTABLE"
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
