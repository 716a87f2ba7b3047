"""``zikade init`` and ``zikade bootstrap list|add|rm``: the repo and its bootstrap list.

The bootstrap list lives in ``<repo>/config`` (Kubo's ``Bootstrap``). It is
empty by default: the public Amino bootstrap peers are one ``bootstrap add``
away, but nothing dials the internet unless asked. With a daemon running the
edits go through its RPC API so the running node learns new peers at once.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from zikade_py.http.errors import ArgumentError
from zikade_py.http.repo import (
    RepoError,
    bootstrap_add,
    bootstrap_rm,
    init_repo,
    is_initialized,
    load_config,
)

from .backend import via_daemon
from .common import (
    fail,
    json_option,
    one_line_errors,
    print_json,
    repo_option,
    require_repo,
    resolve_repo,
    timeout_option,
)
from .output import JSONObj
from .registry import summary


def _check_multiaddrs(addrs: tuple[str, ...]) -> None:
    from zikade_py.http.args import parse_multiaddr

    with one_line_errors():
        for addr in addrs:
            parse_multiaddr(addr, need_peer=True)


@click.command("init", short_help=summary("init"))
@click.option(
    "--bootstrap", multiple=True, metavar="MULTIADDR", help="Initial bootstrap peer (repeatable)."
)
@repo_option
@json_option
def init_command(bootstrap: tuple[str, ...], repo: str, as_json: bool) -> None:
    """Create the repo: identity key and config (with an empty bootstrap list by default)."""
    repo_dir = resolve_repo(repo)
    _check_multiaddrs(bootstrap)
    with one_line_errors():
        if is_initialized(repo_dir):
            raise RepoError(f"zikade repo already exists at {repo_dir}")
        cfg, _ = init_repo(repo_dir, bootstrap=list(bootstrap))
    doc = {"ID": cfg.peer_id, "Repo": str(repo_dir)}
    if as_json:
        print_json(doc)
        return
    click.echo(f"initializing zikade repo at {doc['Repo']}")
    click.echo(f"peer identity: {doc['ID']}")


def _via_daemon_or(
    repo: str,
    command: str,
    args: list[str],
    options: dict[str, str],
    local: Callable[[], JSONObj],
    timeout: float,
) -> JSONObj:
    """The daemon's answer when one runs (it updates its own list), else ``local()``."""
    repo_dir = require_repo(repo)
    docs: list[JSONObj] = []
    if via_daemon(repo_dir, command.replace("/", "-"), command, args, options, docs.append,
                  timeout=timeout):  # fmt: skip
        return docs[0] if docs else {}
    with one_line_errors():
        try:
            return local()
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
    raise AssertionError("unreachable")


@click.group("bootstrap", short_help=summary("bootstrap"))
def bootstrap_group() -> None:
    """Show or edit the list of peers to join the network through."""


@bootstrap_group.command("list")
@repo_option
@timeout_option
@json_option
def bootstrap_list_command(repo: str, timeout: float, as_json: bool) -> None:
    """Show the bootstrap peers, one multiaddr per line."""
    repo_dir = resolve_repo(repo)
    doc = _via_daemon_or(
        repo, "bootstrap/list", [], {}, lambda: {"Peers": load_config(repo_dir).bootstrap}, timeout
    )
    _print_peers(doc, as_json, "")


@bootstrap_group.command("add")
@click.argument("addrs", nargs=-1, required=True, metavar="MULTIADDR...")
@repo_option
@timeout_option
@json_option
def bootstrap_add_command(addrs: tuple[str, ...], repo: str, timeout: float, as_json: bool) -> None:
    """Add peers (multiaddrs ending in /p2p/<peer-id>) to the bootstrap list."""
    repo_dir = resolve_repo(repo)
    _check_multiaddrs(addrs)
    doc = _via_daemon_or(
        repo, "bootstrap/add", list(addrs), {},
        lambda: {"Peers": bootstrap_add(repo_dir, list(addrs))}, timeout,
    )  # fmt: skip
    _print_peers(doc, as_json, "added ")


@bootstrap_group.command("rm")
@click.argument("addrs", nargs=-1, metavar="MULTIADDR...")
@click.option("--all", "remove_all", is_flag=True, help="Remove every bootstrap peer.")
@repo_option
@timeout_option
@json_option
def bootstrap_rm_command(
    addrs: tuple[str, ...], remove_all: bool, repo: str, timeout: float, as_json: bool
) -> None:
    """Remove peers from the bootstrap list (or all of them with --all)."""
    repo_dir = resolve_repo(repo)
    if not addrs and not remove_all:
        fail("give the multiaddrs to remove, or --all")
    _check_multiaddrs(addrs)
    options = {"all": "true"} if remove_all else {}
    doc = _via_daemon_or(
        repo, "bootstrap/rm", list(addrs), options,
        lambda: {"Peers": bootstrap_rm(repo_dir, list(addrs), remove_all=remove_all)}, timeout,
    )  # fmt: skip
    _print_peers(doc, as_json, "removed ")


def _print_peers(doc: JSONObj, as_json: bool, prefix: str) -> None:
    if as_json:
        print_json(doc)
        return
    for addr in doc.get("Peers") or []:
        click.echo(f"{prefix}{addr}")
