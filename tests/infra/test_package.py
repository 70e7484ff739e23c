"""The deployable package built by scripts/package.sh.

Builds the package once for the module (a release build for the musl target:
several minutes of cargo on two cores), unpacks it, and checks what the
Functions host needs: host.json at the root, one folder per function, the
executable `sommelier` stored with mode 0755, nothing else; that the
executable is statically linked and runs; that packing twice gives the same
bytes, zip and bill of materials alike; that the executable carries its
dependency list (cargo auditable) and that the bill of materials beside the
zip names every crate the executable shows; and that the packed executable
passes the host-playing harness (`cargo test --test integration host_harness::` with
SOMMELIER_BIN pointing at it).

Set SOMMELIER_PACKAGE_BINARY to pack an already built executable instead of
building one (scripts/package.sh --binary).
"""

import json
import os
import re
import shutil
import stat
import struct
import subprocess
import tomllib
import zipfile
import zlib
from pathlib import Path

import pytest

EXECUTABLE = "sommelier"
BUILD_TIMEOUT = 45 * 60

# ELF constants (System V ABI, x86-64 supplement).
PT_DYNAMIC, PT_INTERP = 2, 3
DT_NULL, DT_NEEDED = 0, 1
EM_X86_64 = 62
ET_EXEC, ET_DYN = 2, 3


def run_package(repo: Path, out: Path, binary: str | None = None) -> None:
    command = ["bash", "scripts/package.sh", "--out", str(out)]
    if binary:
        command += ["--binary", binary]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}{result.stderr[-8000:]}"


@pytest.fixture(scope="module")
def package(repo: Path, tmp_path_factory) -> Path:
    """The package, built once for this module."""
    out = tmp_path_factory.mktemp("package") / "sommelier-functions.zip"
    run_package(repo, out, os.environ.get("SOMMELIER_PACKAGE_BINARY") or None)
    return out


@pytest.fixture(scope="module")
def unpacked(package: Path, tmp_path_factory) -> Path:
    """The package unpacked, with the modes stored in the zip applied (zipfile does not)."""
    root = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            target = archive.extract(info, root)
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                os.chmod(target, mode)
    return root


def sbom_of(package: Path) -> Path:
    """The bill of materials scripts/package.sh writes beside <name>.zip: <name>.cdx.json."""
    return package.with_name(package.stem + ".cdx.json")


def expected_entries(repo: Path) -> set:
    functions = {f"{path.parent.name}/function.json" for path in (repo / "functions").glob("*/function.json")}
    return {"host.json", EXECUTABLE} | functions


# ---------------------------------------------------------------------------------------------
# A small ELF reader: enough to tell a static executable from a dynamic one.
# ---------------------------------------------------------------------------------------------


def elf_facts(data: bytes) -> dict:
    """Type, machine, program header types and DT_NEEDED count of a 64-bit little-endian ELF file."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    assert data[4] == 2, "not a 64-bit ELF file"
    assert data[5] == 1, "not a little-endian ELF file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    segments = []
    for index in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + index * e_phentsize
        )
        segments.append((p_type, p_offset, p_filesz))
    needed = 0
    for p_type, p_offset, p_filesz in segments:
        if p_type != PT_DYNAMIC:
            continue
        for entry in range(p_offset, p_offset + p_filesz - 15, 16):  # Elf64_Dyn: d_tag, d_val
            d_tag, _d_val = struct.unpack_from("<qQ", data, entry)
            if d_tag == DT_NULL:
                break
            needed += d_tag == DT_NEEDED
    return {
        "type": e_type,
        "machine": e_machine,
        "segment_types": [segment[0] for segment in segments],
        "needed": needed,
    }


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """The contents of a named section of a 64-bit little-endian ELF file, or None."""
    e_shoff = struct.unpack_from("<Q", data, 40)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)

    def header(index: int) -> tuple:
        _name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, e_shoff + index * e_shentsize)
        return _name, offset, size

    _, names_offset, names_size = header(e_shstrndx)
    names = data[names_offset:names_offset + names_size]
    for index in range(e_shnum):
        name_index, offset, size = header(index)
        name = names[name_index:names.index(b"\0", name_index)].decode()
        if name == wanted:
            return data[offset:offset + size]
    return None


def test_elf_reader_tells_static_from_dynamic():
    """The reader itself, on executables whose linkage is known: python3 (dynamic)."""
    python = Path(os.path.realpath("/proc/self/exe")).read_bytes()
    facts = elf_facts(python)
    assert PT_INTERP in facts["segment_types"] and facts["needed"] > 0


# ---------------------------------------------------------------------------------------------
# The command itself (no build needed)
# ---------------------------------------------------------------------------------------------


def test_package_script_passes_shellcheck(repo: Path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (Debian package shellcheck)"
    result = subprocess.run([shellcheck, "scripts/package.sh"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_package_script_refuses_bad_arguments(repo: Path, tmp_path: Path):
    unknown = subprocess.run(["bash", "scripts/package.sh", "--frobnicate"], cwd=repo, capture_output=True, text=True)
    assert unknown.returncode != 0 and "unknown argument: --frobnicate" in unknown.stderr
    assert "Usage:" in unknown.stderr
    missing = subprocess.run(
        ["bash", "scripts/package.sh", "--binary", str(tmp_path / "absent"), "--out", str(tmp_path / "p.zip")],
        cwd=repo, capture_output=True, text=True,
    )
    assert missing.returncode != 0 and "no executable at" in missing.stderr
    assert not (tmp_path / "p.zip").exists()


def test_package_script_checks_its_prerequisites(repo: Path):
    """A fresh machine gets the exact commands to run instead of cargo's "target may not be
    installed"; this machine (set up by scripts/install-tools.sh) has everything."""
    ready = subprocess.run(["bash", "scripts/package.sh", "--check", "--no-install"], cwd=repo,
                           capture_output=True, text=True, timeout=120)
    assert ready.returncode == 0 and "prerequisites are in place" in ready.stderr, ready.stderr

    no_compiler = subprocess.run(
        ["bash", "scripts/package.sh", "--check", "--no-install"], cwd=repo, capture_output=True, text=True,
        timeout=120, env={**os.environ, "CC_x86_64_unknown_linux_musl": "no-such-musl-gcc"},
    )
    assert no_compiler.returncode == 1
    assert "apt-get install musl-tools" in no_compiler.stderr, no_compiler.stderr

    # No Rust toolchain on PATH at all.
    bare = {**os.environ, "PATH": "/usr/bin:/bin"}
    if shutil.which("cargo", path=bare["PATH"]) is None:
        no_cargo = subprocess.run(["bash", "scripts/package.sh", "--check", "--no-install"], cwd=repo,
                                  capture_output=True, text=True, timeout=120, env=bare)
        assert no_cargo.returncode == 1
        assert "rustup target add x86_64-unknown-linux-musl" in no_cargo.stderr, no_cargo.stderr


# ---------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------


def test_layout_is_exactly_host_json_functions_and_executable(package: Path, repo: Path):
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
    assert len(names) == len(set(names)), f"duplicate entries: {names}"
    assert set(names) == expected_entries(repo), (
        f"unexpected: {sorted(set(names) - expected_entries(repo))}, "
        f"missing: {sorted(expected_entries(repo) - set(names))}"
    )
    assert "local.settings.json" not in names
    assert not any(name.endswith("/") for name in names), "directory entries in the zip"
    assert names == sorted(names), "entries are not sorted"


def test_every_function_json_is_packed_under_its_folder_name(unpacked: Path, repo: Path):
    sources = sorted((repo / "functions").glob("*/function.json"))
    assert sources, "no functions/*/function.json in the repository"
    for source in sources:
        packed = unpacked / source.parent.name / "function.json"
        assert packed.is_file(), f"{source.parent.name}/function.json missing"
        assert packed.read_bytes() == source.read_bytes()
        json.loads(packed.read_text())


def test_host_json_is_at_the_root_and_names_the_executable(unpacked: Path, repo: Path):
    host = unpacked / "host.json"
    assert host.read_bytes() == (repo / "host.json").read_bytes()
    description = json.loads(host.read_text())["customHandler"]["description"]
    assert description["defaultExecutablePath"] == EXECUTABLE
    assert (unpacked / description["defaultExecutablePath"]).is_file()


def test_executable_mode_0755_is_stored_in_the_zip(package: Path):
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            assert info.create_system == 3, f"{info.filename}: not stored with Unix attributes"
            assert stat.S_ISREG(mode), f"{info.filename}: not a regular file"
            expected = 0o755 if info.filename == EXECUTABLE else 0o644
            assert stat.S_IMODE(mode) == expected, f"{info.filename}: mode {oct(stat.S_IMODE(mode))}"


def test_executable_is_static_x86_64(unpacked: Path):
    facts = elf_facts((unpacked / EXECUTABLE).read_bytes())
    assert facts["machine"] == EM_X86_64, f"machine {facts['machine']}, expected x86-64"
    assert facts["type"] in (ET_EXEC, ET_DYN)
    assert PT_INTERP not in facts["segment_types"], "has a program interpreter: dynamically linked"
    assert facts["needed"] == 0, f"needs {facts['needed']} shared libraries"


def test_executable_runs(unpacked: Path):
    binary = unpacked / EXECUTABLE
    assert os.access(binary, os.X_OK)
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_packing_twice_gives_identical_bytes(package: Path, unpacked: Path, repo: Path, tmp_path: Path):
    again = tmp_path / "again.zip"
    run_package(repo, again, str(unpacked / EXECUTABLE))
    assert again.read_bytes() == package.read_bytes()
    assert sbom_of(again).read_bytes() == sbom_of(package).read_bytes(), "the SBOM differs between two runs"


def test_executable_carries_its_dependency_list(unpacked: Path, package: Path, repo: Path):
    """cargo auditable's `.dep-v0` section: zlib-compressed JSON of the crates, readable from
    the deployed file alone (`cargo audit bin`, trivy, syft...)."""
    section = elf_section((unpacked / EXECUTABLE).read_bytes(), ".dep-v0")
    assert section, "no .dep-v0 section: the executable was not built with cargo auditable"
    embedded = json.loads(zlib.decompress(section))["packages"]
    roots = [entry for entry in embedded if entry.get("root")]
    assert [entry["name"] for entry in roots] == [EXECUTABLE]
    locked = {(entry["name"], entry["version"]) for entry in tomllib.loads((repo / "Cargo.lock").read_text())["package"]}
    assert {(entry["name"], entry["version"]) for entry in embedded} <= locked
    # Every crate the bill of materials says is linked in is in the embedded list as such.
    linked_in = {(entry["name"], entry["version"]) for entry in embedded if entry.get("kind", "runtime") == "runtime"}
    components = json.loads(sbom_of(package).read_text())["components"]
    required = {(c["name"], c["version"]) for c in components if c["scope"] == "required"}
    assert required <= linked_in, f"in the SBOM, not embedded: {sorted(required - linked_in)}"


def test_sbom_names_every_crate_the_executable_shows(unpacked: Path, package: Path):
    """The executable keeps the source path of each crate whose panics it can report
    (`.../<name>-<version>/src/...`): each such crate must be in the SBOM as linked in."""
    data = (unpacked / EXECUTABLE).read_bytes()
    seen = {
        (match.group(1).decode(), match.group(2).decode())
        for match in re.finditer(rb"/registry/src/[^/\0]+/([A-Za-z0-9_-]+?)-(\d+\.\d+\.\d+(?:[-+][A-Za-z0-9.]+)?)/", data)
    }
    assert len(seen) >= 10, f"only {len(seen)} crate paths found in the executable: {sorted(seen)}"
    components = json.loads(sbom_of(package).read_text())["components"]
    required = {(c["name"], c["version"]) for c in components if c["scope"] == "required"}
    assert seen <= required, f"in the executable, not in the SBOM: {sorted(seen - required)}"


def test_packed_executable_passes_the_host_harness(unpacked: Path, repo: Path):
    harness = repo / "tests" / "integration" / "host_harness.rs"
    assert harness.is_file(), "tests/integration/host_harness.rs (the host-playing harness of the serving issue) is missing"
    env = dict(os.environ, SOMMELIER_BIN=str(unpacked / EXECUTABLE))
    result = subprocess.run(
        ["cargo", "test", "--test", "integration", "host_harness::"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, f"host harness failed:\n{result.stdout[-8000:]}{result.stderr[-8000:]}"
