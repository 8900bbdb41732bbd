"""Validation of the networking.k8s.io kinds: NetworkPolicy, and the warning it carries.

A third part of validation.py, which merges `NETWORKING_VALIDATORS` and `NETWORKING_WARNINGS`
into its tables -- use those. The rules are `ValidateNetworkPolicy` of Kubernetes 1.32
(`pkg/apis/networking/validation`), with its field paths and messages: the pod selector, each
rule's ports (number or name, `endPort` only after a numeric port and not below it) and peers
(exactly one of pod/namespace selector or ipBlock, an ipBlock's `except` strictly inside its
`cidr`), and policyTypes. 1.32 adds no rule of its own on update.

Pilothouse's pod network (loopback addresses on one host, or a namespace per pod) has no
packet filter to program, so NetworkPolicy objects are accepted and stored for the tools
that read them, but nothing enforces them. Every write of one says so to the client, as a
`Warning` header (a strategy's WarningsOnCreate/WarningsOnUpdate): a user who applies a
default-deny policy must not believe their pods are now isolated.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from pilothouse.machinery.errors import Cause, forbidden, invalid_value, not_supported, required

from .validation import (
    PORT_RANGE,
    PROTOCOLS,
    Validator,
    as_dict,
    as_list,
    is_int,
    is_valid_port_name,
    validate_label_selector,
)

#: The warnings a write of one kind earns (WarningsOnCreate/WarningsOnUpdate), by object.
Warner = Callable[[dict], list[str]]

NETWORKING_GROUP = "networking.k8s.io"
POLICY_TYPES = ("Ingress", "Egress")
NOT_A_CIDR = "not a valid CIDR"
NOT_ENFORCED = (
    "NetworkPolicy is stored but not enforced: this cluster's pod network does not "
    "implement network policies, so pod traffic is not restricted by it"
)
_CIDR = re.compile(r"(?P<ip>[^/]+)/(?P<bits>\d{1,3})")


def parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network a CIDR denotes, as Go's ParseCIDRSloppy reads it, or None if it is not one.

    Host bits may be set (`10.0.0.1/8` is 10.0.0.0/8) and IPv4 octets may carry leading
    zeros (`010.0.0.0/8` is 10.0.0.0/8, read as decimal); an address without a prefix length
    is not a CIDR."""
    match = _CIDR.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    ip = match["ip"]
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", ip):
        ip = ".".join(str(int(octet)) for octet in ip.split("."))
    try:
        return ipaddress.ip_network(f"{ip}/{match['bits']}", strict=False)
    except ValueError:
        return None


def validate_ip_block(block: dict, path: str) -> list[Cause]:
    """ValidateIPBlock: a CIDR, and `except` entries that are CIDRs strictly inside it.

    As upstream, the first `except` entry that is not a CIDR ends the checks."""
    cidr = block.get("cidr")
    if not cidr:
        return [required(f"{path}.cidr")]
    network = parse_cidr(cidr)
    if network is None:
        return [invalid_value(f"{path}.cidr", cidr, NOT_A_CIDR)]
    causes: list[Cause] = []
    for i, entry in enumerate(as_list(block.get("except"))):
        at = f"{path}.except[{i}]"
        excluded = parse_cidr(entry)
        if excluded is None:
            causes.append(invalid_value(at, entry, NOT_A_CIDR))
            return causes
        if (excluded.network_address not in network
                or network.prefixlen >= excluded.prefixlen):
            causes.append(invalid_value(at, entry, "must be a strict subset of `cidr`"))
    return causes


def validate_network_policy_port(port: dict, path: str) -> list[Cause]:
    """ValidateNetworkPolicyPort: protocol, and `port` with the `endPort` that may follow it."""
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        causes.append(not_supported(f"{path}.protocol", protocol, ("TCP", "UDP", "SCTP")))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            causes.append(invalid_value(f"{path}.endPort", end,
                                        "may not be specified when `port` is not specified"))
    elif isinstance(number, str):
        if end is not None:
            causes.append(invalid_value(f"{path}.endPort", end,
                                        "may not be specified when `port` is non-numeric"))
        causes += [invalid_value(f"{path}.port", number, msg) for msg in is_valid_port_name(number)]
    else:
        if not is_int(number) or not 1 <= number <= 65535:
            causes.append(invalid_value(f"{path}.port", number, PORT_RANGE))
        if end is not None:
            if is_int(end) and is_int(number) and end < number:
                causes.append(invalid_value(f"{path}.endPort", end,
                                            "must be greater than or equal to `port`"))
            if not is_int(end) or not 1 <= end <= 65535:
                causes.append(invalid_value(f"{path}.endPort", end, PORT_RANGE))
    return causes


def validate_network_policy_peer(peer: dict, path: str) -> list[Cause]:
    """ValidateNetworkPolicyPeer: at least one selector or an ipBlock, an ipBlock alone."""
    causes: list[Cause] = []
    for selector in ("podSelector", "namespaceSelector"):
        if peer.get(selector) is not None:
            causes += validate_label_selector(peer[selector], f"{path}.{selector}")
    block = peer.get("ipBlock")
    if block is not None:
        causes += validate_ip_block(as_dict(block), f"{path}.ipBlock")
    present = sum(peer.get(key) is not None
                  for key in ("podSelector", "namespaceSelector", "ipBlock"))
    if present == 0:
        causes.append(required(path, "must specify a peer"))
    elif present > 1 and block is not None:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


def validate_network_policy(policy: dict) -> list[Cause]:
    """ValidateNetworkPolicySpec: the pod selector, every ingress then egress rule, the types."""
    spec = as_dict(policy.get("spec"))
    causes = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_list(spec.get(direction))):
            at = f"spec.{direction}[{i}]"
            rule = as_dict(rule)
            for j, port in enumerate(as_list(rule.get("ports"))):
                causes += validate_network_policy_port(as_dict(port), f"{at}.ports[{j}]")
            for j, peer in enumerate(as_list(rule.get(peers))):
                causes += validate_network_policy_peer(as_dict(peer), f"{at}.{peers}[{j}]")
    types = as_list(spec.get("policyTypes"))
    if len(types) > len(POLICY_TYPES):
        causes.append(invalid_value("spec.policyTypes", types,
                                    "may not specify more than two policyTypes"))
        return causes
    for i, kind in enumerate(types):
        if kind not in POLICY_TYPES:
            causes.append(not_supported(f"spec.policyTypes[{i}]", kind, POLICY_TYPES))
    return causes


def network_policy_warnings(policy: dict[str, Any]) -> list[str]:
    """Every create and update of a NetworkPolicy: it is kept, not enforced."""
    return [NOT_ENFORCED]


NETWORKING_VALIDATORS: dict[tuple[str, str], Validator] = {
    (NETWORKING_GROUP, "NetworkPolicy"): validate_network_policy,
}

NETWORKING_WARNINGS: dict[tuple[str, str], Warner] = {
    (NETWORKING_GROUP, "NetworkPolicy"): network_policy_warnings,
}

__all__ = ["NETWORKING_VALIDATORS", "NETWORKING_WARNINGS", "NOT_ENFORCED", "Warner",
           "parse_cidr", "validate_network_policy"]
