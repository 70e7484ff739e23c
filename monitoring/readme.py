"""Regenerates the parts of monitoring/README.md that restate the repository: the alert table and
runbooks (from prometheus/rules/*.yml) and the Ansible roles (from each role's meta/main.yml), so
that the README cannot drift from what is deployed.

    python3 monitoring/readme.py           rewrite the generated sections in place
    python3 monitoring/readme.py --check   exit 1 if they are out of date (the test suite runs this)

Each generated section sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; the rest
of the README is written by hand. Needs PyYAML.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
SITE = HERE / "ansible" / "site.yml"


def one_line(text: str) -> str:
    """An annotation on one line, its template placeholders named: `{{ $labels.instance }}` becomes
    _instance_, `{{ $value | humanize }}` _value_."""
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", r"_\1_", str(text))
    text = re.sub(r"\{\{\s*\$value[^}]*\}\}", "_value_", text)
    return " ".join(text.split())


def alerts() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((HERE / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend((path.name, rule) for rule in group["rules"] if "alert" in rule)
    return out


def alerts_section() -> str:
    rows = ["| alert | rules file | fires when | for | severity |", "|---|---|---|---|---|"]
    runbooks = []
    for path, rule in alerts():
        name, annotations = rule["alert"], rule["annotations"]
        rows.append(
            f"| [{name}](#{name.lower()}) | `{path}` | {one_line(annotations['summary'])} "
            f"| {rule.get('for', '0s')} | {rule['labels']['severity']} |"
        )
        runbooks.append(
            f"### {name}\n\n{one_line(annotations['description'])}\n\n"
            f"**Runbook.** {one_line(annotations['runbook'])}\n"
        )
    return "\n".join(rows) + "\n\n" + "\n".join(runbooks)


def roles_section() -> str:
    order = [entry["role"] for play in yaml.safe_load(SITE.read_text(encoding="utf-8")) for entry in play["roles"]]
    rows = ["| order | role | what it does |", "|---|---|---|"]
    for i, role in enumerate(order, 1):
        meta = yaml.safe_load((HERE / "ansible" / "roles" / role / "meta" / "main.yml").read_text(encoding="utf-8"))
        rows.append(f"| {i} | `{role}` | {one_line(meta['galaxy_info']['description'])} |")
    return "\n".join(rows) + "\n"


SECTIONS = {"alerts": alerts_section, "roles": roles_section}


def render(text: str) -> str:
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no section `<!-- generated: {name} -->` ... `<!-- end: {name} -->`")
        text = pattern.sub(lambda m: m.group(1) + build() + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description="Regenerate monitoring/README.md's generated sections.")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if current != wanted:
            print("monitoring/README.md is out of date: run python3 monitoring/readme.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
