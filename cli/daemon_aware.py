"""``zikade id`` and ``zikade ping`` that use the daemon when one runs.

The host-level commands in :mod:`cli.p2p_commands` work without any node; this
module wraps them so that, like ``ipfs id`` / ``ipfs ping``, they go through
the repo's daemon when it answers (``id`` then shows the daemon's listen
addresses, ``ping`` accepts a bare peer id) and fall back to the original
otherwise. ``--timeout`` takes Kubo durations; ``--json`` is added.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from zikade_py.http.args import parse_peer_or_addr
from zikade_py.http.client import JSONObj, RpcClient

from .backend import open_backend, timeout_options
from .common import Duration, print_json, resolve_repo, run_command


async def _daemon_doc(repo: str, command: str) -> JSONObj | None:
    client = RpcClient.for_repo(resolve_repo(repo))
    if client is None:
        return None
    async with client:
        if not await client.alive():
            return None
        return await client.request(command)


def _daemon_running(repo: str) -> bool:
    async def check() -> bool:
        client = RpcClient.for_repo(resolve_repo(repo))
        if client is None:
            return False
        async with client:
            return await client.alive()

    return run_command("daemon-check", check, root_span=False)


def _params(base: click.Command, default_timeout: str) -> list[click.Parameter]:
    params = [p for p in base.params if p.name != "timeout"]
    params.append(
        click.Option(
            ["--timeout"],
            type=Duration(),
            default=default_timeout,
            show_default=True,
            help="Give up after this long (e.g. 30s, 1m).",
        )
    )
    params.append(click.Option(["--json", "as_json"], is_flag=True, help="Print JSON."))
    return params


def _callback(base: click.Command) -> Callable[..., Any]:
    if base.callback is None:
        raise TypeError(f"command {base.name} has no callback")
    return base.callback


def daemon_aware_id(base: click.Command) -> click.Command:
    """``id``: our identity from the daemon when it runs, else the host-level command."""
    original = _callback(base)

    def callback(as_json: bool, **kwargs: Any) -> None:
        if kwargs.get("multiaddr") is None:
            doc = run_command("id", lambda: _daemon_doc(kwargs["repo"], "id"))
            if doc is not None:
                click.echo(json.dumps(doc, indent=2))
                return
        original(**kwargs)

    return click.Command(
        name=base.name, callback=callback, params=_params(base, "30s"), help=base.help
    )


def daemon_aware_ping(base: click.Command) -> click.Command:
    """``ping``: through the daemon (peer id or multiaddr) when it runs, else host-level."""
    original = _callback(base)

    def callback(as_json: bool, **kwargs: Any) -> None:
        target = kwargs["multiaddr"]
        if not as_json and not _daemon_running(kwargs["repo"]):
            original(**kwargs)
            return
        count, timeout = int(kwargs["count"]), float(kwargs["timeout"])

        async def go() -> None:
            parse_peer_or_addr(target)
            async with open_backend(
                resolve_repo(kwargs["repo"]), command="ping", timeout=timeout, join=False
            ) as backend:
                opts = timeout_options(timeout, count=str(count))
                async for doc in backend.stream("ping", [target], opts):
                    _print_ping(doc, as_json)

        run_command("ping", go, timeout=timeout)

    return click.Command(
        name=base.name,
        callback=callback,
        params=_params(base, "30s"),
        help=(base.help or "")
        + " Uses the daemon when it runs (then MULTIADDR may be a bare peer ID).",
    )


def _print_ping(doc: JSONObj, as_json: bool) -> None:
    if as_json:
        print_json(doc)
    elif doc.get("Text"):
        click.echo(str(doc["Text"]))
    elif doc.get("Success"):
        click.echo(f"Pong received: time={int(doc.get('Time', 0)) / 1e6:.2f} ms")


def _build() -> tuple[click.Command, click.Command]:
    from .p2p_commands import id_command as base_id
    from .p2p_commands import ping_command as base_ping

    return daemon_aware_id(base_id), daemon_aware_ping(base_ping)


id_command, ping_command = _build()
"""The ``id`` and ``ping`` commands ``cli.main`` registers."""
