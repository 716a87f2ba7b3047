"""The live resource view (``swarm/resources``, Kubo's ``ipfs swarm resources``).

Why: limits only help an operator who can see how close the node is to them. One
row per limit of a scope, usage beside the limit: the resource manager's scopes
(system, protocols, the busiest peers, IP groups and connections), the host's
connection count, and the record stores' usage against their totals.
"""

from __future__ import annotations

from typing import Any

from zikade_py.dht.node import Node


def _row(scope: str, name: str, used: int, limit: int) -> dict[str, Any]:
    return {"Scope": scope, "Name": name, "Used": used, "Limit": limit}


def resource_view(node: Node, top: int = 10) -> dict[str, Any]:
    """Every scope's usage and limit as ``{"Scopes": [{"Scope", "Name", "Used", "Limit"}]}``."""
    host = node.host
    rows = [_row("system", "Connections", len(host.connmgr), host.config.max_connections)]
    rows += [_row(*usage) for usage in host.resources.scopes(top)]
    limits = node.config.store_limits
    providers, values = node.providers.usage(), node.values.usage()
    rows += [
        _row("store:providers", "Records", providers.records, limits.max_providers),
        _row("store:providers", "Bytes", providers.bytes, limits.max_provider_bytes),
        _row("store:values", "Records", values.records, limits.max_values),
        _row("store:values", "Bytes", values.bytes, limits.max_value_bytes),
    ]
    return {"Scopes": rows}
