"""What the routing commands print on stdout: Kubo's text lines, or NDJSON with ``--json``.

Kept apart from the ``-v`` live view (:mod:`.render`, which needs rich and the
p2p stack) so that printing a daemon's answer loads nothing but the standard
library. :class:`ResultPrinter` also counts the results, because a query that
found nothing exits with status 1 (README, "Scripting").
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

JSONObj = dict[str, Any]


class QueryEventType(IntEnum):
    """Kubo's ``routing.QueryEventType`` numbers as they arrive in the JSON events.

    The node's own enum lives in the DHT package; the CLI keeps the wire numbers
    here so rendering a daemon's answer does not load the DHT stack.
    """

    SENDING_QUERY = 0
    PEER_RESPONSE = 1
    FINAL_PEER = 2
    QUERY_ERROR = 3
    PROVIDER = 4
    VALUE = 5
    ADDING_PEER = 6
    DIALING_PEER = 7


RESULT_TYPES: dict[str, int] = {
    "routing/findpeer": 2,  # FINAL_PEER
    "routing/findprovs": 4,  # PROVIDER
    "routing/provide": 2,  # FINAL_PEER: a peer that took the record
    "routing/get": 5,  # VALUE
    "routing/put": 5,  # VALUE: a peer that stored the record
    "dht/query": 2,  # FINAL_PEER
}
"""The event type that carries a result, per streaming RPC command."""


def event_lines(command: str, ev: JSONObj) -> list[str]:
    """The plain-text output lines of one event for ``command`` (Kubo's text encoders)."""
    kind = ev.get("Type")
    responses: list[Any] = ev.get("Responses") or []
    if command == "routing/findpeer" and kind == QueryEventType.FINAL_PEER:
        return [str(a) for r in responses[:1] for a in r.get("Addrs") or []]
    if command == "routing/findprovs" and kind == QueryEventType.PROVIDER:
        return [str(r.get("ID", "")) for r in responses[:1]]
    if command == "dht/query" and kind == QueryEventType.FINAL_PEER:
        return [str(ev.get("ID", ""))]
    if command == "routing/put" and kind == QueryEventType.VALUE:
        return [str(ev.get("ID", ""))]
    return []


@dataclass
class ResultPrinter:
    """Prints one command's events (text lines or NDJSON) and counts its results."""

    command: str
    as_json: bool
    results: int = 0

    def event(self, ev: JSONObj) -> None:
        """Print what ``ev`` contributes to stdout."""
        if ev.get("Type") == RESULT_TYPES.get(self.command):
            self.results += 1
        if self.as_json:
            sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            return
        if self.command == "routing/get" and ev.get("Type") == QueryEventType.VALUE:
            sys.stdout.buffer.write(base64.b64decode(str(ev.get("Extra") or "")))
            sys.stdout.buffer.flush()
            return
        for line in event_lines(self.command, ev):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
