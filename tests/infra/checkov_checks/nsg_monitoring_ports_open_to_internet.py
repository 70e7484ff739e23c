"""Custom checkov check: no NSG rule may open the monitoring VM's ports to the whole internet.

Fails any inbound Allow rule (a standalone `azurerm_network_security_rule` or an inline
`security_rule` of `azurerm_network_security_group`) whose destination ports include SSH (22),
Grafana (3000), Prometheus (9090) or the Pushgateway (9091) and whose source is `*`,
`0.0.0.0/0`, `Internet` or `Any`. checkov's built-in checks only know SSH and RDP.
"""

from __future__ import annotations

from typing import Any, Iterable

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

MONITORING_PORTS = (22, 3000, 9090, 9091)
OPEN_SOURCES = {"*", "0.0.0.0", "0.0.0.0/0", "::/0", "internet", "any"}


def _first(value: Any) -> Any:
    """checkov wraps every attribute value in a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _flatten(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        out: list[str] = []
        for item in value:
            out.extend(_flatten(item))
        return out
    return [str(value).strip()]


def _port_matches(spec: str, port: int) -> bool:
    spec = spec.strip()
    if spec == "*":
        return True
    if "-" in spec:
        low, _, high = spec.partition("-")
        try:
            return int(low) <= port <= int(high)
        except ValueError:
            return False
    try:
        return int(spec) == port
    except ValueError:
        return False


def rule_opens_monitoring_port(rule: dict[str, Any]) -> bool:
    """True when the rule lets the internet reach one of the monitoring ports."""
    access = str(_first(rule.get("access", [""])) or "").lower()
    direction = str(_first(rule.get("direction", ["Inbound"])) or "Inbound").lower()
    if access != "allow" or direction != "inbound":
        return False

    sources = _flatten(rule.get("source_address_prefix")) + _flatten(rule.get("source_address_prefixes"))
    if not any(source.lower() in OPEN_SOURCES for source in sources):
        return False

    ports = _flatten(rule.get("destination_port_range")) + _flatten(rule.get("destination_port_ranges"))
    return any(_port_matches(spec, port) for spec in ports for port in MONITORING_PORTS)


def _inline_rules(conf: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for block in conf.get("security_rule", []) or []:
        if isinstance(block, dict):
            yield block
        elif isinstance(block, list):
            yield from (item for item in block if isinstance(item, dict))


class MonitoringPortsNotOpenToInternet(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no NSG rule opens SSH, Grafana, Prometheus or the Pushgateway (22, 3000, 9090, 9091) to the internet",
            id="CKV_SOMM_1",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["azurerm_network_security_rule", "azurerm_network_security_group"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        rules = list(_inline_rules(conf)) if "security_rule" in conf else [conf]
        for rule in rules:
            if rule_opens_monitoring_port(rule):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = MonitoringPortsNotOpenToInternet()
