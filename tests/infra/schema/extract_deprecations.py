"""Extracts the deprecated arguments of the azurerm provider from its source, for the offline
schema check (the CDK bindings' .jsii files carry no deprecation markers).

    python3 tests/infra/schema/extract_deprecations.py <provider checkout> <tag> > azurerm-deprecations.json

Reads every `Deprecated:` field in internal/services/**/<name>_resource.go and
<name>_data_source.go at the tag and records it under `azurerm_<name>` with the name of the
schema key it belongs to (the nearest `"key": {` or `Schema["key"]` above it). Nested keys are
recorded by their own name, so the check applies them to any block of the resource.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

KEY = re.compile(r'(?:"(\w+)":\s*\{|Schema\["(\w+)"\]\s*=)')


def main(checkout: str, tag: str) -> None:
    listing = subprocess.run(
        ["git", "-C", checkout, "grep", "-l", "Deprecated:", tag, "--", "internal/services/*.go"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    out: dict[str, dict[str, dict[str, str]]] = {"resource": {}, "data": {}}
    for entry in listing:
        path = entry.split(":", 1)[1]
        name = path.rsplit("/", 1)[-1]
        if name.endswith("_resource.go"):
            kind, rtype = "resource", "azurerm_" + name.removesuffix("_resource.go")
        elif name.endswith("_data_source.go"):
            kind, rtype = "data", "azurerm_" + name.removesuffix("_data_source.go")
        else:
            continue
        text = subprocess.run(["git", "-C", checkout, "show", f"{tag}:{path}"],
                              capture_output=True, text=True, check=True).stdout
        lines = text.splitlines()
        for index, line in enumerate(lines):
            match = re.search(r'\bDeprecated:\s*(.*)', line)
            if not match or line.strip().startswith("//"):
                continue
            for back in range(index, max(index - 40, -1), -1):
                key = KEY.search(lines[back])
                if key:
                    attribute = key.group(1) or key.group(2)
                    message = match.group(1).strip().rstrip(",").strip('"')
                    out[kind].setdefault(rtype, {})[attribute] = message[:200]
                    break
    json.dump({"provider": "azurerm", "version": tag.lstrip("v"),
               "source": f"hashicorp/terraform-provider-azurerm {tag} (MPL-2.0), Deprecated fields",
               **out}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
