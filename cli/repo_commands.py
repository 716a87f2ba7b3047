"""``zikade init`` and ``zikade bootstrap list|add|rm|reset``: the repo and its bootstrap list.

The bootstrap list lives in ``<repo>/config`` (Kubo's ``Bootstrap``). ``init``
writes Kubo's default public peers (``/dnsaddr/bootstrap.libp2p.io/p2p/…``), so
a new node joins the public Amino DHT; ``init --bootstrap ADDR`` writes ADDR
instead, ``init --no-bootstrap`` nothing (a private network), and
``bootstrap reset`` brings the default list back. With a daemon running the
edits go through its RPC API so the running node learns new peers at once.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from zikade_py.http.errors import ArgumentError
from zikade_py.http.repo import (
    DEFAULT_BOOTSTRAP,
    RepoError,
    bootstrap_add,
    bootstrap_reset,
    bootstrap_rm,
    init_repo,
    is_initialized,
    load_config,
    validate_bootstrap_addr,
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

EMPTY_LIST_NOTE = (
    "note: the bootstrap list is empty: this node joins no network until a peer dials it "
    "or one is added ('zikade bootstrap add MULTIADDR', or 'zikade bootstrap reset' for "
    "the public peers)"
)


def _check_multiaddrs(addrs: tuple[str, ...]) -> None:
    with one_line_errors():
        for addr in addrs:
            try:
                validate_bootstrap_addr(addr)
            except ValueError as exc:
                raise ArgumentError(str(exc)) from None


@click.command("init", short_help=summary("init"))
@click.option(
    "--bootstrap",
    multiple=True,
    metavar="MULTIADDR",
    help="Bootstrap peer, instead of the public default list (repeatable; "
    "/dnsaddr/<name> stands for every peer its TXT records name).",
)
@click.option(
    "--no-bootstrap",
    "no_bootstrap",
    is_flag=True,
    help="Start with an empty bootstrap list (a private network).",
)
@repo_option
@json_option
def init_command(bootstrap: tuple[str, ...], no_bootstrap: bool, repo: str, as_json: bool) -> None:
    """Create the repo: identity key and config, whose bootstrap list is the public
    network's default peers (Kubo's) unless --bootstrap or --no-bootstrap say otherwise."""
    repo_dir = resolve_repo(repo)
    if bootstrap and no_bootstrap:
        fail("--bootstrap and --no-bootstrap exclude each other")
    _check_multiaddrs(bootstrap)
    peers = [] if no_bootstrap else list(bootstrap) or None
    with one_line_errors():
        if is_initialized(repo_dir):
            raise RepoError(f"zikade repo already exists at {repo_dir}")
        cfg, _ = init_repo(repo_dir, bootstrap=peers)
    doc = {"ID": cfg.peer_id, "Repo": str(repo_dir)}
    if as_json:
        print_json(doc)
        return
    click.echo(f"initializing zikade repo at {doc['Repo']}")
    click.echo(f"peer identity: {doc['ID']}")
    if not cfg.bootstrap:
        click.echo(EMPTY_LIST_NOTE, err=True)


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
    if not doc.get("Peers") and not as_json:
        click.echo(EMPTY_LIST_NOTE, err=True)


@bootstrap_group.command("add")
@click.argument("addrs", nargs=-1, metavar="MULTIADDR...")
@click.option("--default", "default", is_flag=True, help="Add the public default peers.")
@repo_option
@timeout_option
@json_option
def bootstrap_add_command(
    addrs: tuple[str, ...], default: bool, repo: str, timeout: float, as_json: bool
) -> None:
    """Add peers (multiaddrs ending in /p2p/<peer-id>, or /dnsaddr/<name>) to the list."""
    repo_dir = resolve_repo(repo)
    if default:
        addrs = (*addrs, *DEFAULT_BOOTSTRAP)
    if not addrs:
        fail("give the multiaddrs to add, or --default")
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


@bootstrap_group.command("reset")
@repo_option
@timeout_option
@json_option
def bootstrap_reset_command(repo: str, timeout: float, as_json: bool) -> None:
    """Replace the bootstrap list with the public default peers (Kubo's list)."""
    repo_dir = resolve_repo(repo)
    require_repo(repo)
    defaults = list(DEFAULT_BOOTSTRAP)
    docs: list[JSONObj] = []
    # a running daemon edits its list (and learns the peers) through the RPC API
    if via_daemon(repo_dir, "bootstrap-rm", "bootstrap/rm", [], {"all": "true"}, docs.append,
                  timeout=timeout):  # fmt: skip
        via_daemon(repo_dir, "bootstrap-add", "bootstrap/add", defaults, {}, docs.append,
                   timeout=timeout)  # fmt: skip
        doc: JSONObj = {"Peers": defaults}
    else:
        with one_line_errors():
            doc = {"Peers": bootstrap_reset(repo_dir)}
    _print_peers(doc, as_json, "")


def _print_peers(doc: JSONObj, as_json: bool, prefix: str) -> None:
    if as_json:
        print_json(doc)
        return
    for addr in doc.get("Peers") or []:
        click.echo(f"{prefix}{addr}")
