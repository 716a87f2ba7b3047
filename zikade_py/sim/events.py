"""What can be on the simulator's heap: one small record class per kind of happening.

Each record names its fields (which node sent, which received, which request),
so the engine reads ``entry.request_id`` rather than ``entry[4]``. They are
plain slotted classes, not frozen dataclasses: a large run builds millions of
them, and a frozen dataclass pays for its immutability on every construction.
"""

from __future__ import annotations

from zikade_py.core.key import Key


class Wake:
    """A node's one timer fired (stale unless ``token`` is still the node's current one)."""

    __slots__ = ("node", "token")

    def __init__(self, node: int, token: int) -> None:
        self.node = node
        self.token = token


class Arrive:
    """A request reaches its server ``dst``: ``message`` is a FIND_NODE target or an RPC."""

    __slots__ = ("deadline", "dst", "message", "request_id", "src")

    def __init__(
        self, src: int, dst: int, request_id: int, message: object, deadline: float
    ) -> None:
        self.src = src
        self.dst = dst
        self.request_id = request_id
        self.message = message
        self.deadline = deadline


class Answer:
    """A server's answer reaches the requester ``src`` (or an ADD_PROVIDER was written)."""

    __slots__ = ("closer", "dst", "request_id", "response", "src")

    def __init__(
        self,
        src: int,
        dst: int,
        request_id: int,
        closer: tuple[Key, ...],
        response: object = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.request_id = request_id
        self.closer = closer
        self.response = response


class Fail:
    """A request of ``src`` failed; ``unreachable`` names the peer when the dial failed."""

    __slots__ = ("error", "request_id", "src", "unreachable")

    def __init__(
        self, src: int, request_id: int, error: str, unreachable: Key | None = None
    ) -> None:
        self.src = src
        self.request_id = request_id
        self.error = error
        self.unreachable = unreachable


class Join:
    """The next initial node comes online (a realistic join)."""

    __slots__ = ()


class StartOp:
    """Operation ``number`` of kind ``op`` (lookup, provide, find-providers) starts."""

    __slots__ = ("number", "op")

    def __init__(self, op: str, number: int) -> None:
        self.op = op
        self.number = number


class Churn:
    """One node leaves and a fresh one joins."""

    __slots__ = ()


SimEvent = Wake | Arrive | Answer | Fail | Join | StartOp | Churn
"""Every record the heap can hold."""
