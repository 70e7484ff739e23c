"""Custom checkov check: the Pushgateway (9091), Grafana's own port (3000) and Prometheus (9090)
admit private sources only.

In sommelier's private monitoring design the function app pushes over the VNet (from its
integration subnet) and Grafana is reached through Caddy on 443, so no inbound Allow rule for
these ports may name a public address, a public range or a service tag other than
`VirtualNetwork`. Sources that are expressions checkov cannot resolve are not judged here (the
structural tests pin them).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from nsg_monitoring_ports_open_to_internet import _first, _flatten, _inline_rules, _port_matches

PRIVATE_PORTS = (3000, 9090, 9091)
PRIVATE_TAGS = {"virtualnetwork"}
# RFC 1918: what a VNet's address space is made of.
PRIVATE_NETWORKS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def _is_public(source: str) -> bool:
    """True for a literal public address or range, the wildcard, or a public service tag."""
    text = source.strip()
    if not text or "${" in text or "(" in text or text.startswith(("var.", "local.", "azurerm_", "module.", "data.")):
        return False  # an expression checkov could not resolve
    if text.lower() in PRIVATE_TAGS:
        return False
    if text == "*":
        return True
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return True  # a public service tag: Internet, AzureCloud, ...
    return not any(network.version == 4 and network.subnet_of(private) for private in PRIVATE_NETWORKS)


def rule_admits_public_source(rule: dict[str, Any]) -> bool:
    access = str(_first(rule.get("access", [""])) or "").lower()
    direction = str(_first(rule.get("direction", ["Inbound"])) or "Inbound").lower()
    if access != "allow" or direction != "inbound":
        return False
    ports = _flatten(rule.get("destination_port_range")) + _flatten(rule.get("destination_port_ranges"))
    if not any(_port_matches(spec, port) for spec in ports for port in PRIVATE_PORTS):
        return False
    sources = _flatten(rule.get("source_address_prefix")) + _flatten(rule.get("source_address_prefixes"))
    return any(_is_public(source) for source in sources)


class PrivateMonitoringPorts(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the Pushgateway, Grafana's port and Prometheus (9091, 3000, 9090) admit private sources only",
            id="CKV_SOMM_2",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["azurerm_network_security_rule", "azurerm_network_security_group"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        rules = list(_inline_rules(conf)) if "security_rule" in conf else [conf]
        for rule in rules:
            if rule_admits_public_source(rule):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = PrivateMonitoringPorts()
