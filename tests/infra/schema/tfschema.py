"""Offline schema check of a Terraform configuration against the provider schemas carried by
the published CDK bindings (their `.jsii` assemblies list every resource and data source of a
provider version with its arguments, nested blocks, required flags, types and exported
attributes).

    python3 tests/infra/schema/tfschema.py <module dir> <binding.jsii>... [--deprecations FILE]...

What it reports, per resource, data source and provider block (nested blocks included):
  unknown-argument      an argument or block the schema does not have
  missing-argument      a required argument or block that is absent
  block-as-argument     `name = {...}` where the schema has a block `name { ... }`
  argument-as-block     `name { ... }` where the schema has an argument
  type-error            a literal that Terraform cannot convert to the argument's type
  unknown-attribute     a reference to an attribute the resource or data source does not export
  unknown-type          a resource or data source type the provider does not have
  deprecated-argument   an argument the provider deprecates (from --deprecations files: the
                        `.jsii` files carry no deprecation markers)
  unchecked-provider    a provider the configuration requires without a schema for a version
                        its constraint admits

Each binding records the provider version it was generated from; a configuration is checked
against every binding whose version its `required_providers` constraint admits (so a
constraint that admits an old and a new version is checked against both), and a provider
without any such binding is reported rather than silently skipped. `terraform_data` (built
into Terraform) is checked against its documented schema.

Parsing uses python-hcl2 8.x (its `hcl2` package must be importable).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

# ------------------------------------------------------------------------------------------
# Schemas
# ------------------------------------------------------------------------------------------

PRIMITIVES = {"string", "number", "bool", "any"}


@dataclass
class Arg:
    type: Any  # "string" | "number" | "bool" | "any" | ("list"|"map", element type)
    required: bool


@dataclass
class Block:
    args: dict[str, Arg] = field(default_factory=dict)
    blocks: dict[str, tuple["Block", bool]] = field(default_factory=dict)  # name -> (schema, required)
    # Exported attributes: name -> nested attribute schema (None: a leaf or not traversed).
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Provider:
    name: str
    version: str
    resources: dict[str, Block]
    data: dict[str, Block]
    config: Block
    deprecations: dict[str, dict[str, dict[str, str]]] = field(default_factory=lambda: {"resource": {}, "data": {}})


def _snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).lower()


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


ANCHOR = re.compile(r"#([a-z0-9_]+) ")
LINK = re.compile(r"registry\.terraform\.io/providers/[\w-]+/([\w-]+)/([\d.]+)/docs/(resources|data-sources)/\w+ (\w+)\}")
VERSION = re.compile(r"registry\.terraform\.io/providers/[\w-]+/([\w-]+)/([\d.]+)/docs")


class _Jsii:
    """Turns the types of one `.jsii` assembly into Block schemas."""

    def __init__(self, types: dict[str, Any]):
        self.types = types
        self.cache: dict[str, Block] = {}

    def _is_struct(self, fqn: str) -> bool:
        t = self.types.get(fqn)
        return t is not None and t.get("kind") == "interface" and not fqn.startswith("cdktn.") and not fqn.startswith("cdktf.")

    def _classify(self, typ: dict[str, Any]) -> tuple[str, Any]:
        """('arg', type) or ('block', fqn) for a property type."""
        if "union" in typ:
            members = [m for m in typ["union"]["types"] if m.get("fqn") not in ("cdktn.IResolvable", "cdktf.IResolvable")]
            if len(members) == 1:
                return self._classify(members[0])
            return "arg", "any"
        if "primitive" in typ:
            p = typ["primitive"]
            return "arg", {"string": "string", "number": "number", "boolean": "bool"}.get(p, "any")
        if "collection" in typ:
            element = typ["collection"]["elementtype"]
            kind = "map" if typ["collection"]["kind"] == "map" else "list"
            if "fqn" in element and self._is_struct(element["fqn"]):
                return "block", element["fqn"]
            sub_kind, sub = self._classify(element)
            return "arg", (kind, sub if sub_kind == "arg" else "any")
        if "fqn" in typ and self._is_struct(typ["fqn"]):
            return "block", typ["fqn"]
        return "arg", "any"

    def _name(self, prop: dict[str, Any]) -> str:
        docs = prop.get("docs", {})
        for text in (docs.get("summary", ""), docs.get("remarks", "")):
            match = ANCHOR.search(text)
            if match and _norm(match.group(1)) == _norm(prop["name"]):
                return match.group(1)
        return _snake(prop["name"])

    def block(self, fqn: str) -> Block:
        if fqn in self.cache:
            return self.cache[fqn]
        block = Block()
        self.cache[fqn] = block
        for prop in self.types[fqn].get("properties", []):
            name = self._name(prop)
            kind, typ = self._classify(prop["type"])
            required = not prop.get("optional", False)
            if kind == "block":
                block.blocks[name] = (self.block(typ), required)
            else:
                block.args[name] = Arg(typ, required)
        return block

    def attrs(self, fqn: str, depth: int = 0) -> dict[str, Any]:
        """Exported attributes of a resource class or an output reference, by normalised name."""
        out: dict[str, Any] = {}
        t = self.types.get(fqn, {})
        for prop in t.get("properties", []):
            name = prop["name"]
            if prop.get("static") or name.endswith("Input") or name in ("fqn", "creationStack", "internalValue", "terraformAttribute", "terraformResource"):
                continue
            nested = None
            typ = prop.get("type", {})
            if depth < 4 and "fqn" in typ and typ["fqn"] in self.types and self.types[typ["fqn"]].get("kind") == "class":
                nested = self._element_attrs(typ["fqn"], depth + 1)
            out[_norm(name)] = nested
        return out

    def _element_attrs(self, fqn: str, depth: int) -> dict[str, Any] | None:
        t = self.types[fqn]
        if fqn.endswith("OutputReference"):
            return self.attrs(fqn, depth)
        for method in t.get("methods", []):
            if method.get("name") == "get":
                returns = method.get("returns", {}).get("type", {})
                if "fqn" in returns and returns["fqn"] in self.types:
                    return self.attrs(returns["fqn"], depth)
        return None


def load_binding(path: Path, deprecation_files: Iterable[Path] = ()) -> Provider:
    """Reads a CDK binding's `.jsii` assembly (cached as a compact summary next to it)."""
    summary = path.with_suffix(path.suffix + ".summary.json")
    size = path.stat().st_size
    cached = json.loads(summary.read_text()) if summary.exists() else {}
    if cached.get("source_size") == size:
        provider = _from_summary(cached)
    else:
        provider = _from_jsii(json.loads(path.read_text()))
        tmp = summary.with_name(f"{summary.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"source_size": size, **_to_summary(provider)}))
        tmp.replace(summary)
    for dep in deprecation_files:
        data = json.loads(Path(dep).read_text())
        # Deprecations read from one provider version apply to that version and later ones.
        since = _parse_version(data.get("version", "0"))
        if data.get("provider") == provider.name and _parse_version(provider.version) >= since:
            for kind in ("resource", "data"):
                for rtype, attrs in data.get(kind, {}).items():
                    provider.deprecations[kind].setdefault(rtype, {}).update(attrs)
    return provider


def _from_jsii(assembly: dict[str, Any]) -> Provider:
    types = assembly["types"]
    jsii = _Jsii(types)
    resources: dict[str, Block] = {}
    data: dict[str, Block] = {}
    name = version = None
    config = Block()
    for fqn, t in types.items():
        if t.get("kind") != "class":
            continue
        summary = t.get("docs", {}).get("summary", "")
        match = LINK.search(summary)
        if match:
            name, version = match.group(1), match.group(2)
            config_fqn = fqn + "Config"
            if config_fqn not in types:
                continue
            block = jsii.block(config_fqn)
            block.attrs = jsii.attrs(fqn)
            (resources if match.group(3) == "resources" else data)[match.group(4)] = block
        elif fqn.endswith("Provider") and fqn + "Config" in types:
            provider_match = VERSION.search(json.dumps(t.get("docs", {})))
            config = jsii.block(fqn + "Config")
            if provider_match:
                name, version = provider_match.group(1), provider_match.group(2)
    # Terraform meta-arguments of a provider block.
    config.args.pop("alias", None)
    config.args["alias"] = Arg("string", False)
    if name is None or version is None:
        raise ValueError("not a CDK provider binding: no registry links in its docs")
    return Provider(name, version, resources, data, config)


def _block_to_json(block: Block) -> dict[str, Any]:
    return {
        "a": {k: [v.type, v.required] for k, v in block.args.items()},
        "b": {k: [_block_to_json(b), r] for k, (b, r) in block.blocks.items()},
        "x": block.attrs,
    }


def _block_from_json(data: dict[str, Any]) -> Block:
    def typ(value: Any) -> Any:
        return tuple(typ(v) for v in value) if isinstance(value, list) else value

    return Block(
        args={k: Arg(typ(v[0]), v[1]) for k, v in data["a"].items()},
        blocks={k: (_block_from_json(v[0]), v[1]) for k, v in data["b"].items()},
        attrs=data["x"],
    )


def _to_summary(p: Provider) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "config": _block_to_json(p.config),
            "resources": {k: _block_to_json(v) for k, v in p.resources.items()},
            "data": {k: _block_to_json(v) for k, v in p.data.items()}}


def _from_summary(d: dict[str, Any]) -> Provider:
    return Provider(d["name"], d["version"],
                    {k: _block_from_json(v) for k, v in d["resources"].items()},
                    {k: _block_from_json(v) for k, v in d["data"].items()},
                    _block_from_json(d["config"]))


# terraform_data is built into Terraform (terraform.io/builtin/terraform).
TERRAFORM_DATA = Block(
    args={"input": Arg("any", False), "triggers_replace": Arg("any", False)},
    attrs={"id": None, "input": None, "output": None, "triggersreplace": None},
)

# ------------------------------------------------------------------------------------------
# Version constraints
# ------------------------------------------------------------------------------------------


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def admits(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint (`~> 4.78`, `>= 3.7, < 4.0`, ...) admits version."""
    v = _parse_version(version)
    v3 = v + (0,) * (3 - len(v))
    for part in constraint.split(","):
        part = part.strip()
        match = re.match(r"(~>|>=|<=|!=|>|<|=)?\s*([\d.]+)$", part)
        if not match:
            raise ValueError(f"unsupported version constraint {part!r}")
        op, bound_text = match.group(1) or "=", match.group(2)
        bound = _parse_version(bound_text)
        b3 = bound + (0,) * (3 - len(bound))
        if op == "~>":
            upper = list(bound[:-1]) if len(bound) > 1 else [bound[0]]
            upper[-1] += 1
            upper_t = tuple(upper) + (0,) * (3 - len(upper))
            if not (b3 <= v3 < upper_t):
                return False
        elif op == ">=" and not v3 >= b3:
            return False
        elif op == "<=" and not v3 <= b3:
            return False
        elif op == ">" and not v3 > b3:
            return False
        elif op == "<" and not v3 < b3:
            return False
        elif op == "=" and v3 != b3:
            return False
        elif op == "!=" and v3 == b3:
            return False
    return True


# ------------------------------------------------------------------------------------------
# The configuration
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.message}"


def _import_hcl2():
    import hcl2  # noqa: PLC0415

    if not hasattr(hcl2, "SerializationOptions"):
        raise ImportError("python-hcl2 8.x is required (checkov's bc-python-hcl2 shadows it)")
    return hcl2


def parse_module(directory: Path) -> dict[str, list[Any]]:
    hcl2 = _import_hcl2()
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)
    merged: dict[str, list[Any]] = {}
    for path in sorted(Path(directory).glob("*.tf")):
        parsed = hcl2.loads(path.read_text(), serialization_options=options)
        for key, blocks in parsed.items():
            if isinstance(blocks, list):
                merged.setdefault(key, []).extend(blocks)
    return merged


RESOURCE_META = {"count", "for_each", "provider", "depends_on"}
RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
WHOLE_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _literal_type_error(value: Any, typ: Any) -> str | None:
    """Why Terraform cannot convert a literal to typ, or None (expressions are not checked)."""
    if value is None or typ == "any":
        return None
    if isinstance(value, str) and "${" in value:
        if WHOLE_EXPRESSION.match(value):
            return None  # an expression: its type is known only to Terraform
        # A template yields a string, which Terraform may still convert to a number or bool.
        return f"a string template where a {typ[0]} is expected" if isinstance(typ, tuple) else None
    if isinstance(typ, tuple):
        kind, element = typ
        if kind == "list":
            if not isinstance(value, list):
                return f"{_describe(value)} where a list is expected"
            for item in value:
                error = _literal_type_error(item, element)
                if error:
                    return f"element: {error}"
            return None
        if not isinstance(value, dict):
            return f"{_describe(value)} where a map is expected"
        for item in value.values():
            error = _literal_type_error(item, element)
            if error:
                return f"map value: {error}"
        return None
    if isinstance(value, (list, dict)):
        return f"{_describe(value)} where a {typ} is expected"
    if typ == "string":
        return None
    if typ == "number":
        if isinstance(value, bool):
            return f"{_describe(value)} where a number is expected"
        if isinstance(value, (int, float)):
            return None
        try:
            float(str(value))
            return None
        except ValueError:
            return f"{_describe(value)} where a number is expected"
    if typ == "bool":
        if isinstance(value, bool) or (isinstance(value, str) and value in ("true", "false")):
            return None
        return f"{_describe(value)} where a bool is expected"
    return None


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the bool {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"the string {value!r}"


class Checker:
    def __init__(self, providers: list[Provider], config: dict[str, list[Any]]):
        self.providers = providers
        self.config = config
        self.findings: list[Finding] = []
        self.declared: dict[str, set[str]] = {"resource": set(), "data": set()}

    # -- helpers
    def _add(self, kind: str, where: str, message: str) -> None:
        finding = Finding(kind, where, message)
        if finding not in self.findings:
            self.findings.append(finding)

    def _owner(self, rtype: str) -> str:
        return "terraform" if rtype == "terraform_data" else rtype.split("_", 1)[0]

    # -- blocks
    def check_body(self, where: str, body: dict[str, Any], schema: Block, meta: set[str], meta_blocks: set[str],
                   deprecated: dict[str, str], version: str) -> None:
        present: set[str] = set()
        for key, value in body.items():
            if key == "__is_block__":
                continue
            if key in meta or key in meta_blocks:
                continue
            if key == "dynamic" and isinstance(value, list):
                for dyn in value:
                    for name, dyn_body in dyn.items():
                        if name == "__is_block__":
                            continue
                        present.add(name)
                        if name not in schema.blocks:
                            kind = "argument-as-block" if name in schema.args else "unknown-argument"
                            self._add(kind, f"{where}.{name}", f"dynamic block {name!r} is not a block of the schema ({version})")
                            continue
                        for content in dyn_body.get("content", []):
                            self.check_body(f"{where}.{name}", content, schema.blocks[name][0], set(), set(), deprecated, version)
                continue
            present.add(key)
            if key in schema.blocks:
                if not _is_block(value):
                    self._add("block-as-argument", f"{where}.{key}", f"{key} is a block: write `{key} {{ ... }}`, not `{key} = ...` ({version})")
                    continue
                for item in value:
                    self.check_body(f"{where}.{key}", item, schema.blocks[key][0], set(), set(), deprecated, version)
            elif key in schema.args:
                if _is_block(value):
                    self._add("argument-as-block", f"{where}.{key}", f"{key} is an argument: write `{key} = ...`, not a block ({version})")
                    continue
                error = _literal_type_error(value, schema.args[key].type)
                if error:
                    self._add("type-error", f"{where}.{key}", f"{error} ({version})")
                if key in deprecated:
                    self._add("deprecated-argument", f"{where}.{key}", f"{deprecated[key]} ({version})")
            else:
                self._add("unknown-argument", f"{where}.{key}", f"no argument or block {key!r} in the schema ({version})")
        for name, arg in schema.args.items():
            if arg.required and name not in present:
                self._add("missing-argument", f"{where}.{name}", f"required argument {name!r} is missing ({version})")
        for name, (_, required) in schema.blocks.items():
            if required and name not in present:
                self._add("missing-argument", f"{where}.{name}", f"required block {name!r} is missing ({version})")

    def _schema(self, provider: Provider | None, kind: str, rtype: str) -> Block | None:
        if rtype == "terraform_data" and kind == "resource":
            return TERRAFORM_DATA
        if provider is None:
            return None
        return (provider.resources if kind == "resource" else provider.data).get(rtype)

    def check_resources(self, kind: str) -> None:
        for block in self.config.get(kind, []):
            for rtype, named in block.items():
                if rtype == "__is_block__":
                    continue
                for name, body in named.items():
                    if name == "__is_block__":
                        continue
                    self.declared[kind].add(f"{rtype}.{name}")
                    prefix = "data." if kind == "data" else ""
                    where = f"{prefix}{rtype}.{name}"
                    owners = self._providers_for(rtype)
                    if rtype == "terraform_data":
                        owners = [None]
                    for provider in owners:
                        schema = self._schema(provider, kind, rtype)
                        version = f"{provider.name} {provider.version}" if provider else "terraform"
                        if schema is None:
                            self._add("unknown-type", where, f"{kind} type {rtype!r} does not exist ({version})")
                            continue
                        deprecated = provider.deprecations[kind].get(rtype, {}) if provider else {}
                        meta_blocks = RESOURCE_META_BLOCKS if kind == "resource" else {"lifecycle"}
                        self.check_body(where, body, schema, RESOURCE_META, meta_blocks, deprecated, version)

    def _providers_for(self, rtype: str) -> list[Provider]:
        owner = self._owner(rtype)
        return [p for p in self.providers if p.name == owner]

    def check_provider_blocks(self) -> None:
        for block in self.config.get("provider", []):
            for pname, body in block.items():
                if pname == "__is_block__":
                    continue
                for provider in [p for p in self.providers if p.name == pname]:
                    self.check_body(f"provider.{pname}", body, provider.config, set(), set(), {},
                                    f"{provider.name} {provider.version}")

    # -- references
    REFERENCE = re.compile(
        r"(?<![\w.])(data\.)?([a-z][a-z0-9]*_[a-z0-9_]+)\.([a-zA-Z_][\w-]*)((?:\[[^\]]*\]|\.[a-zA-Z_][\w]*)*)")

    def check_references(self) -> None:
        for where, expression in self._expressions():
            for match in self.REFERENCE.finditer(expression):
                is_data, rtype, name, rest = match.group(1), match.group(2), match.group(3), match.group(4)
                if self._owner(rtype) not in {p.name for p in self.providers} | {"terraform"}:
                    continue
                kind = "data" if is_data else "resource"
                address = f"{'data.' if is_data else ''}{rtype}.{name}"
                if f"{rtype}.{name}" not in self.declared[kind]:
                    self._add("unknown-attribute", where, f"{address} is not declared in this module")
                    continue
                steps = re.findall(r"\.([a-zA-Z_]\w*)", re.sub(r"\[[^\]]*\]", "", rest))
                if not steps:
                    continue
                for provider in self._providers_for(rtype) or [None]:
                    schema = self._schema(provider, kind, rtype)
                    if schema is None:
                        continue
                    version = f"{provider.name} {provider.version}" if provider else "terraform"
                    attrs: Any = schema.attrs
                    path = address
                    for step in steps:
                        if not isinstance(attrs, dict):
                            break
                        path = f"{path}.{step}"
                        if _norm(step) not in attrs:
                            self._add("unknown-attribute", where, f"{path} is not exported ({version})")
                            break
                        attrs = attrs[_norm(step)]

    def _expressions(self) -> Iterable[tuple[str, str]]:
        def walk(where: str, value: Any) -> Iterable[tuple[str, str]]:
            if isinstance(value, str):
                if "${" in value:
                    yield where, value
            elif isinstance(value, list):
                for item in value:
                    yield from walk(where, item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if key != "__is_block__":
                        yield from walk(f"{where}.{key}", item)

        for kind, blocks in self.config.items():
            if kind in ("moved", "import", "removed"):
                continue  # they name addresses, not values
            for block in blocks:
                yield from walk(kind, block)

    # -- providers without schema
    def check_required_providers(self) -> None:
        for terraform in self.config.get("terraform", []):
            for required in terraform.get("required_providers", []):
                for name, spec in required.items():
                    if name == "__is_block__" or not isinstance(spec, dict):
                        continue
                    if not [p for p in self.providers if p.name == name]:
                        self._add("unchecked-provider", f"terraform.required_providers.{name}",
                                  f"no schema of {name} for a version that {spec.get('version', 'any')!r} admits")

    def run(self) -> list[Finding]:
        self.check_resources("resource")
        self.check_resources("data")
        self.check_provider_blocks()
        self.check_references()
        self.check_required_providers()
        return self.findings


def required_versions(config: dict[str, list[Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for terraform in config.get("terraform", []):
        for required in terraform.get("required_providers", []):
            for name, spec in required.items():
                if isinstance(spec, dict) and "version" in spec:
                    out[name] = spec["version"]
    return out


def check_module(directory: Path, bindings: list[Provider]) -> tuple[list[Finding], list[Provider]]:
    """Checks a module against the bindings its version constraints admit; returns the
    findings and the bindings used."""
    config = parse_module(directory)
    constraints = required_versions(config)
    used = [p for p in bindings if p.name not in constraints or admits(constraints[p.name], p.version)]
    return Checker(used, config).run(), used


def main(argv: list[str]) -> int:
    args = list(argv)
    deprecations = []
    while "--deprecations" in args:
        index = args.index("--deprecations")
        deprecations.append(Path(args[index + 1]))
        del args[index:index + 2]
    directory, paths = Path(args[0]), [Path(a) for a in args[1:]]
    bindings = [load_binding(p, deprecations) for p in paths]
    findings, used = check_module(directory, bindings)
    print("checked against " + ", ".join(f"{p.name} {p.version}" for p in used), file=sys.stderr)
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
