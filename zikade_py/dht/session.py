"""Context-scoped sessions (DESIGN.md §4, bitswap's "Context-Scoped Sessions").

A service that runs several DHT calls for one purpose (resolve a name, fetch a
file) wants to tag them together in traces and stop them together, without
passing a session object through every layer. :func:`session` puts a
:class:`Session` into a :class:`contextvars.ContextVar`; every call the node
starts inside it (in this task or in tasks created inside the block, which copy
the context) registers its query with the session and tags its spans with
``session_id``. :meth:`Session.cancel`, or leaving the outermost block, stops
every query of the session and cancels its requests; the calls end with
:class:`SessionCancelledError`.

A ``session()`` opened while one is active joins it: the inner block shares the
id, and leaving it does not stop the outer session's work.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol


class SessionCancelledError(Exception):
    """The call's session was cancelled (or its block left) while the call ran."""


class SessionMember(Protocol):
    """A running query as a session sees it."""

    def stop(self) -> None:
        """Stop the query now (its requests are cancelled)."""
        ...

    async def wait_stopped(self) -> None:
        """Return once the query finished and its requests are gone."""
        ...


class Session:
    """A group of DHT calls with one id, stopped together."""

    __slots__ = ("_cancelled", "_members", "id")

    def __init__(self, session_id: str | None = None) -> None:
        self.id = session_id or secrets.token_hex(8)
        """Carried as the span attribute ``session_id`` by every call of the session."""
        self._members: set[SessionMember] = set()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called; new calls in the session fail at once."""
        return self._cancelled

    @property
    def active(self) -> int:
        """Queries of this session still running."""
        return len(self._members)

    def add(self, member: SessionMember) -> None:
        """Register a running query; one added after :meth:`cancel` is stopped at once."""
        if self._cancelled:
            member.stop()
            return
        self._members.add(member)

    def discard(self, member: SessionMember) -> None:
        """Forget a query that finished."""
        self._members.discard(member)

    def cancel(self) -> None:
        """Stop every query of the session; the calls raise :class:`SessionCancelledError`."""
        self._cancelled = True
        for member in list(self._members):
            member.stop()

    async def wait_idle(self) -> None:
        """Return once every query of the session has ended and its requests are gone."""
        for _ in range(1000):
            members = list(self._members)
            if not members:
                return
            await asyncio.gather(*(m.wait_stopped() for m in members), return_exceptions=True)
            self._members.difference_update(members)

    def __repr__(self) -> str:
        return f"Session({self.id}, active={len(self._members)}, cancelled={self._cancelled})"


_CURRENT: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "zikade_session", default=None
)


def current_session() -> Session | None:
    """The session of the current context, if any."""
    return _CURRENT.get()


@asynccontextmanager
async def session(session_id: str | None = None) -> AsyncIterator[Session]:
    """Open a session (or join the one already active) for the calls inside the block.

    Leaving the block that opened the session cancels whatever is still running in
    it and waits until those queries and their requests are gone.
    """
    existing = _CURRENT.get()
    if existing is not None:
        yield existing
        return
    sess = Session(session_id)
    token = _CURRENT.set(sess)
    try:
        yield sess
    finally:
        _CURRENT.reset(token)
        sess.cancel()  # also refuses calls from tasks of the block that outlive it
        await sess.wait_idle()


__all__ = ["Session", "SessionCancelledError", "SessionMember", "current_session", "session"]
