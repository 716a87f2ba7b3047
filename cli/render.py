"""Rendering of query events: Kubo's text lines, NDJSON, and the live ``-v`` view.

stdout stays parseable (one item per line, or NDJSON with ``--json``); the
``-v`` view goes to stderr: one line per event in Kubo's ``printEvent``
vocabulary (``* querying <id>``, ``* <id> says use …``), and on a terminal a
live rich status line with the peers asked, the answers and the closest peers
seen so far.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.live import Live
from rich.text import Text

from zikade_py.p2p.peer_id import InvalidPeerIDError, PeerID

from .output import JSONObj, QueryEventType


def _xor_distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(hashlib.sha256(a).digest(), "big") ^ int.from_bytes(
        hashlib.sha256(b).digest(), "big"
    )


def _short(peer: str) -> str:
    return peer if len(peer) <= 16 else f"{peer[:8]}…{peer[-6:]}"


@dataclass
class QueryView:
    """The ``-v`` view of one command's query; a context manager around the live display.

    ``target`` is the preimage of the key looked up (a multihash), used to rank
    the peers seen by XOR distance for "closest so far". ``command`` is the RPC
    path: ``routing/put`` reports VALUE events of peers that stored the record.
    """

    target: bytes | None = None
    enabled: bool = True
    command: str = ""
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    asked: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)
    _live: Live | None = None
    _started: float = field(default_factory=time.monotonic)

    def __enter__(self) -> Self:
        if self.enabled and self.console.is_terminal:
            self._live = Live(self._status(), console=self.console, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        if self.enabled and self.asked:
            self.console.print(self._summary())

    def event(self, ev: JSONObj) -> None:
        """Account for one event and print its line."""
        if not self.enabled or "Type" not in ev:
            return
        peer = str(ev.get("ID") or "")
        kind = int(ev.get("Type", -1))
        responses = [str(r.get("ID", "")) for r in ev.get("Responses") or []]
        if kind == QueryEventType.SENDING_QUERY:
            self.asked.add(peer)
        elif kind == QueryEventType.PEER_RESPONSE:
            self.answered.add(peer)
            for r in responses:
                self._see(r)
        elif kind == QueryEventType.QUERY_ERROR:
            self.failed.add(peer)
        if kind == QueryEventType.VALUE and peer and self.command == "routing/put":
            line = f"stored at {peer}"
        else:
            line = self._line(kind, peer, responses, str(ev.get("Extra") or ""))
        if line:
            stamp = (
                time.strftime("%H:%M:%S", time.localtime())
                + f".{int(time.time() * 1000) % 1000:03d}"
            )
            self.console.print(Text(f"{stamp}: {line}"), soft_wrap=True)
        if self._live is not None:
            self._live.update(self._status())

    def _see(self, peer: str) -> None:
        if self.target is None or peer in self.seen:
            return
        try:
            mh = PeerID.from_string(peer).multihash
        except (InvalidPeerIDError, ValueError):
            return
        self.seen[peer] = _xor_distance(self.target, mh)

    @staticmethod
    def _line(kind: int, peer: str, responses: list[str], extra: str) -> str:
        if kind == QueryEventType.SENDING_QUERY:
            return f"* querying {peer}"
        if kind == QueryEventType.PEER_RESPONSE:
            return f"* {peer} says use {' '.join(responses)}".rstrip()
        if kind == QueryEventType.QUERY_ERROR:
            return f"error: {peer}: {extra}" if peer else f"error: {extra}"
        if kind == QueryEventType.DIALING_PEER:
            return f"dialing peer: {peer}"
        if kind == QueryEventType.ADDING_PEER:
            return f"adding peer to query: {peer}"
        if kind == QueryEventType.FINAL_PEER:
            return f"* closest peer {peer}" if peer else "* found peer"
        if kind == QueryEventType.PROVIDER:
            return f"provider: {' '.join(responses)}"
        if kind == QueryEventType.VALUE:
            return f"got value from {peer}" if peer else "got value"
        return ""

    def _closest(self, n: int = 3) -> list[str]:
        return [p for p, _ in sorted(self.seen.items(), key=lambda kv: kv[1])[:n]]

    def _status(self) -> Text:
        closest = ", ".join(_short(p) for p in self._closest()) or "-"
        return Text.assemble(
            ("querying ", "bold"),
            f"asked {len(self.asked)} · answered {len(self.answered)} · failed {len(self.failed)}",
            f" · {time.monotonic() - self._started:.1f}s · closest so far: {closest}",
        )

    def _summary(self) -> Text:
        return Text(
            f"asked {len(self.asked)} peers, {len(self.answered)} answered, "
            f"{len(self.failed)} failed, in {time.monotonic() - self._started:.2f}s"
        )
