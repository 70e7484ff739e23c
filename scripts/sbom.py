#!/usr/bin/env python3
"""Writes a CycloneDX 1.5 bill of materials (JSON) of the crates a binary is built from.

Usage:
    python3 scripts/sbom.py --target x86_64-unknown-linux-musl --bin sommelier --out PATH

The crates are those `cargo tree --target TARGET` reaches from the package that owns the
binary through normal and build dependencies (Cargo's own resolver: features that only
dev-dependencies or other platforms turn on do not count); their details come from
`cargo metadata`. Each one is a component with
  - its version, `pkg:cargo` package URL (the `bom-ref`), licence expression, description and
    repository,
  - the SHA-256 of its `.crate` file as recorded in Cargo.lock,
  - a scope: `required` for code linked into the binary, `excluded` for code that only runs
    while it is built (build scripts' dependencies, procedural macros and what they use).
    A crate used both ways is `required`. This is the split `cargo auditable` records inside
    the binary (its `runtime` and `build` kinds).
The `dependencies` section holds the graph between them (runtime and build edges).

The output is reproducible: components and edges sorted, no timestamp, and a serial number
derived from the content itself, so the same Cargo.lock, manifest and target give the same
bytes.

Not here: the C code some crates compile (it is part of the crate that ships it), the Rust
standard library and the toolchain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

RUNTIME, BUILD = 2, 1  # stronger kind wins when a crate is reached both ways
SPEC_VERSION = "1.5"


def fail(message: str) -> None:
    sys.exit(f"sbom: {message}")


def cargo_metadata(manifest: Path, target: str) -> dict:
    command = [
        "cargo", "metadata", "--format-version", "1", "--locked",
        "--manifest-path", str(manifest), "--filter-platform", target,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def lock_checksums(lock: Path) -> dict:
    """(name, version) -> the SHA-256 Cargo.lock records for registry crates."""
    document = tomllib.loads(lock.read_text())
    return {
        (package["name"], package["version"]): package["checksum"]
        for package in document.get("package", [])
        if "checksum" in package
    }


def root_package(metadata: dict, binary: str) -> dict:
    """The workspace package that owns the binary."""
    members = set(metadata["workspace_members"])
    for package in metadata["packages"]:
        if package["id"] not in members:
            continue
        for target in package["targets"]:
            if target["name"] == binary and "bin" in target["kind"]:
                return package
    fail(f"no workspace package has a binary named {binary!r}")
    raise AssertionError  # unreachable


TREE_LINE = re.compile(r"^(\d+)(\S+) v(\S+)(?: \(.*?\))*$")


def cargo_tree(manifest: Path, target: str, package: str, edges: str) -> tuple[set, dict]:
    """The crates (name, version) `cargo tree` reaches from package over the given edge kinds,
    and parent -> set of children. Cargo's own resolver decides, so features that only
    dev-dependencies or other targets turn on do not count."""
    command = [
        "cargo", "tree", "--locked", "--manifest-path", str(manifest), "--package", package,
        "--target", target, "--edges", edges, "--prefix", "depth", "--format", "{p}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{result.stderr}")
    reached: set = set()
    children: dict = {}
    path: list = []
    for line in result.stdout.splitlines():
        match = TREE_LINE.match(line)
        if not match:
            fail(f"cannot read this line of cargo tree: {line!r}")
        depth, crate = int(match.group(1)), (match.group(2), match.group(3))
        del path[depth:]
        if path:
            children.setdefault(path[-1], set()).add(crate)
        path.append(crate)
        reached.add(crate)
    return reached, children


def classify(manifest: Path, target: str, root: dict) -> tuple[dict, dict]:
    """(name, version) -> RUNTIME or BUILD for every crate the root package's build uses, and
    the dependency edges between them (normal and build)."""
    name = root["name"]
    every, edges = cargo_tree(manifest, target, name, "normal,build")
    linked, _ = cargo_tree(manifest, target, name, "normal,no-proc-macro")
    return {crate: RUNTIME if crate in linked else BUILD for crate in every}, edges


def purl(package: dict) -> str:
    return f"pkg:cargo/{package['name']}@{package['version']}"


def licence_expression(text: str) -> str:
    # Some older crates separate alternatives with "/" (not SPDX): "MIT/Apache-2.0".
    return " OR ".join(part.strip() for part in text.split("/")) if "/" in text else text


def component(package: dict, kind: int, checksums: dict) -> dict:
    entry = {
        "type": "library",
        "bom-ref": purl(package),
        "name": package["name"],
        "version": package["version"],
        "scope": "required" if kind == RUNTIME else "excluded",
        "purl": purl(package),
    }
    if package.get("description"):
        entry["description"] = " ".join(package["description"].split())
    checksum = checksums.get((package["name"], package["version"]))
    if checksum:
        entry["hashes"] = [{"alg": "SHA-256", "content": checksum}]
    if package.get("license"):
        entry["licenses"] = [{"expression": licence_expression(package["license"])}]
    if package.get("repository"):
        entry["externalReferences"] = [{"type": "vcs", "url": package["repository"]}]
    return entry


def bill_of_materials(metadata: dict, root: dict, tree: tuple, checksums: dict, binary: str, target: str) -> dict:
    packages = {(package["name"], package["version"]): package for package in metadata["packages"]}
    kinds, edges = tree
    root_key = (root["name"], root["version"])
    unknown = sorted(crate for crate in kinds if crate not in packages)
    if unknown:
        fail(f"cargo tree names crates cargo metadata does not know: {unknown}")
    main = component(root, RUNTIME, checksums)
    main["type"] = "application"
    main.pop("scope")
    components = sorted(
        (component(packages[crate], kind, checksums) for crate, kind in kinds.items() if crate != root_key),
        key=lambda entry: (entry["name"], entry["version"]),
    )
    dependencies = sorted(
        (
            {"ref": purl(packages[parent]), "dependsOn": sorted({purl(packages[child]) for child in children})}
            for parent, children in edges.items()
        ),
        key=lambda entry: entry["ref"],
    )
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "component": main,
            "properties": [
                {"name": "cargo:target", "value": target},
                {"name": "cargo:binary", "value": binary},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    }
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:sha256:{digest}")
    return {"bomFormat": "CycloneDX", "specVersion": SPEC_VERSION, "serialNumber": f"urn:uuid:{serial}", **document}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the target triple the binary is built for")
    parser.add_argument("--bin", required=True, help="the binary's name (a [[bin]] of a workspace package)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the CycloneDX JSON")
    parser.add_argument("--manifest-path", type=Path, default=Path("Cargo.toml"))
    args = parser.parse_args()

    metadata = cargo_metadata(args.manifest_path, args.target)
    lock = Path(metadata["workspace_root"]) / "Cargo.lock"
    if not lock.is_file():
        fail(f"no Cargo.lock at {lock}")
    root = root_package(metadata, args.bin)
    tree = classify(args.manifest_path, args.target, root)
    document = bill_of_materials(metadata, root, tree, lock_checksums(lock), args.bin, args.target)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    runtime = sum(1 for entry in document["components"] if entry["scope"] == "required")
    print(
        f"sbom: wrote {args.out} ({len(document['components'])} crates: {runtime} linked in, "
        f"{len(document['components']) - runtime} used only to build)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
