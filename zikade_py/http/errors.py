"""The one-line failures of the CLI, the RPC API and the daemon.

Kept in a module of their own, free of heavy imports, so the command line can
recognise them without loading the DHT stack (commands that only talk to a
running daemon start faster).
"""

from __future__ import annotations


class ArgumentError(ValueError):
    """Bad input from the user (a malformed peer id, CID, key, multiaddr or duration)."""


class OpError(Exception):
    """A command failed for a reason other than bad input (not found, timed out, unreachable)."""


class DaemonError(Exception):
    """The daemon cannot start (port in use, bad address): one line for the user."""


class RpcError(Exception):
    """The daemon answered with an error object; ``client_error`` when it was our bad input."""

    def __init__(self, message: str, *, code: int = 0, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def client_error(self) -> bool:
        """Whether the daemon blamed the request (Kubo ``ErrClient``)."""
        return self.code == 1


class DaemonUnavailableError(Exception):
    """No daemon answers at the API address (not running, gone, or the connection broke)."""
