"""What every ``zikade`` command shares: options, one-line errors, the run loop.

Kubo conventions (ECOSYSTEM.md A1): ``--repo`` / ``ZIKADE_PATH`` pick the repo,
``--timeout`` takes Go durations (``30s``, ``1m``), ``--json`` switches to
NDJSON, and every failure is ONE line ``Error: …`` on stderr with exit status 1
(click's own usage errors keep status 2). :func:`run_command` runs a
command's coroutine inside a root span ``CLI.<command>`` so a traced command
is one trace, daemon included.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from zikade_py.http.durations import parse_duration
from zikade_py.http.errors import (
    ArgumentError,
    DaemonError,
    DaemonUnavailableError,
    OpError,
    RpcError,
)
from zikade_py.http.repo import DEFAULT_REPO, RepoError, repo_path, require_initialized

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = "1m"
"""How long a network command may take unless ``--timeout`` says otherwise."""

DEFAULT_TRACE_ENDPOINT = "http://127.0.0.1:4318"
"""Where ``--trace`` exports without an endpoint (``telemetry.DEFAULT_OTLP_HTTP_ENDPOINT``;
repeated here so that building the options does not load OpenTelemetry)."""


class CommandError(Exception):
    """A failure to report as one line (bad input, unreachable peer, no daemon)."""


_ONE_LINE_ERRORS = (
    CommandError,
    ArgumentError,
    OpError,
    RpcError,
    DaemonUnavailableError,
    DaemonError,
    RepoError,
)


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` (one line) on stderr and exit with status 1."""
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(1)


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A Go-style duration (``30s``, ``1m30s``, ``500ms``) or plain seconds, as float seconds."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Parse ``value``; click turns a failure into a usage error (exit 2)."""
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value), allow_zero=self.allow_zero)
        except ArgumentError as exc:
            self.fail(str(exc), param, ctx)


def repo_option(func: F) -> F:
    """``--repo PATH`` (env ``ZIKADE_PATH``, default ``~/.zikade``)."""
    return click.option(
        "--repo",
        envvar="ZIKADE_PATH",
        default=DEFAULT_REPO,
        show_default=True,
        help="Repo directory (env ZIKADE_PATH).",
    )(func)


def timeout_option(func: F) -> F:
    """``--timeout DURATION`` bounding the whole command."""
    return click.option(
        "--timeout",
        type=Duration(),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Give up after this long (e.g. 30s, 1m).",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output (NDJSON for streams)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (NDJSON events).")(func)


def verbose_option(func: F) -> F:
    """``-v``: show the query live on stderr (collected into :attr:`QueryOptions.verbose`).

    Goes with :func:`network_options`, which takes the flag out of the callback's
    keyword arguments; it stands above or below it.
    """
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Show the query live on stderr (peers asked, answers).",
    )(func)


def bootstrap_option(func: F) -> F:
    """``--bootstrap MULTIADDR`` (repeatable) for the in-process node used without a daemon."""
    return click.option(
        "--bootstrap",
        multiple=True,
        metavar="MULTIADDR",
        help="Without a daemon: join through this peer (repeatable; adds to the repo's list).",
    )(func)


def trace_option(func: F) -> F:
    """``--trace [ENDPOINT]``: export spans over OTLP/HTTP (default the local Jaeger port)."""
    return click.option(
        "--trace",
        is_flag=False,
        flag_value=DEFAULT_TRACE_ENDPOINT,
        default=None,
        metavar="[ENDPOINT]",
        help=f"Export traces over OTLP/HTTP (default {DEFAULT_TRACE_ENDPOINT}).",
    )(func)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """The options every network command shares, as the one value its callback receives.

    Without it each command would declare (and hand on) the same five or six
    parameters; with it a new shared option is one field and one decorator.
    """

    repo: str
    timeout: float
    as_json: bool
    bootstrap: tuple[str, ...]
    trace: str | None
    verbose: bool = False


_QUERY_FIELDS = tuple(f.name for f in fields(QueryOptions))


def network_options(func: Callable[..., T]) -> Callable[..., T]:
    """The options of every command that talks to the network, passed on as ``opts``.

    The callback takes ``opts: QueryOptions`` instead of ``repo``, ``timeout``,
    ``as_json``, ``bootstrap``, ``trace`` (and ``verbose`` with :func:`verbose_option`).
    """

    @functools.wraps(func)
    def collect(*args: Any, **kwargs: Any) -> T:
        shared = {name: kwargs.pop(name) for name in _QUERY_FIELDS if name in kwargs}
        return func(*args, opts=QueryOptions(**shared), **kwargs)

    wrapped: Callable[..., T] = collect
    for option in (trace_option, bootstrap_option, json_option, timeout_option, repo_option):
        wrapped = option(wrapped)
    return wrapped


def print_json(doc: Any, *, indent: int | None = None) -> None:
    """One JSON document (compact, one line, unless ``indent``)."""
    separators = None if indent else (",", ":")
    click.echo(json.dumps(doc, indent=indent, separators=separators))


def tracing_wanted(trace: str | None) -> bool:
    """Whether the command may export spans (``--trace`` or some ``OTEL_*`` variable).

    Only then is OpenTelemetry imported: an untraced command does not pay for it.
    """
    return trace is not None or any(k.startswith("OTEL_") for k in os.environ)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every failure into ``Error: …`` and exit status 1 (``ZIKADE_DEBUG=1``: traceback).

    Ctrl-C exits 130 with ``Error: interrupted``; a closed stdout (``zikade … | head``)
    exits 141 quietly.
    """
    try:
        yield
    except KeyboardInterrupt:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # the reader is gone, nothing to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except _ONE_LINE_ERRORS as exc:
        fail(str(exc) or type(exc).__name__)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:
        if os.environ.get("ZIKADE_DEBUG"):
            raise
        fail(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def command_span(name: str, trace: str | None, service: str = "zikade") -> Iterator[dict[str, str]]:
    """A root span ``CLI.<name>`` when tracing is wanted; yields the headers that carry it.

    For commands answered by the daemon without asyncio: the ``traceparent``
    header makes the daemon's spans part of this command's trace.
    """
    if not tracing_wanted(trace):
        yield {}
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from zikade_py import telemetry

    traced = telemetry.configure_from_env(service, force_otlp_endpoint=trace)
    try:
        with telemetry.tracer().start_as_current_span(f"CLI.{name}"):
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers)
            yield headers
    finally:
        if traced:
            telemetry.shutdown()


def run_command(
    name: str,
    make: Callable[[], Awaitable[T]],
    *,
    timeout: float | None = None,
    trace: str | None = None,
    service: str = "zikade",
    root_span: bool = True,
) -> T:
    """Run a command's coroutine: tracing set up, root span ``CLI.<name>``, one-line errors.

    ``root_span=False`` for servers (daemon, devnet) whose lifetime is no trace.
    ``timeout`` bounds the whole coroutine; every failure becomes ``Error: …``
    and exit status 1 (``ZIKADE_DEBUG=1`` re-raises for a traceback). asyncio and
    OpenTelemetry are imported here, by the commands that run a node.
    """
    import asyncio

    from zikade_py import telemetry

    async def bounded() -> T:
        if timeout is None:
            return await make()
        try:
            async with asyncio.timeout(timeout):
                return await make()
        except TimeoutError:
            raise CommandError(f"timed out after {timeout:g}s") from None

    async def main() -> T:
        if not root_span:  # long-running servers: their requests make their own traces
            return await bounded()
        with telemetry.tracer().start_as_current_span(f"CLI.{name}"):
            return await bounded()

    with one_line_errors():
        traced = telemetry.configure_from_env(service, force_otlp_endpoint=trace)
        try:
            return asyncio.run(main())
        finally:
            if traced:
                telemetry.shutdown()
    raise AssertionError("unreachable")  # one_line_errors exits on every failure


def resolve_repo(repo: str) -> Path:
    """The ``--repo`` text as a path."""
    return repo_path(repo)


def require_repo(repo: str) -> Path:
    """The repo directory, which must have been initialised (Kubo: ``no IPFS repo found``).

    Every command but ``init`` and ``devnet`` starts here: nothing creates an
    identity behind the user's back. Exits with one ``Error:`` line otherwise.
    """
    path = resolve_repo(repo)
    try:
        require_initialized(path)
    except RepoError as exc:
        fail(str(exc))
    return path
