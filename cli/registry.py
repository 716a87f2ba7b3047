"""Every ``zikade`` command: where it lives and its one-line summary, without importing it.

Why a table: ``zikade --help`` lists every command with its summary. Click
would import each command's module to ask for it, and those modules pull in
the node, aiohttp and protobuf (0.8 s). The summaries live here instead and
each command takes its ``short_help`` from this table, so the two cannot
drift apart. Targets are relative to this package, so the package works under
whatever name it is installed as (``zikade_cli``, see pyproject.toml).
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    """A command's ``module:attribute`` (relative to this package) and its summary."""

    target: str
    summary: str


COMMANDS: dict[str, Entry] = {
    "init": Entry(".repo_commands:init_command", "Create the repo: identity key and config."),
    "bootstrap": Entry(
        ".repo_commands:bootstrap_group", "Show or edit the peers to join the network through."
    ),
    "daemon": Entry(".daemon_command:daemon_command", "Run a long-lived DHT node (RPC API)."),
    "devnet": Entry(".devnet:devnet_command", "Run a local devnet of N nodes on 127.0.0.1."),
    "find-peer": Entry(".routing_commands:find_peer_command", "Find the addresses of a peer."),
    "find-providers": Entry(
        ".routing_commands:find_providers_command", "Find the peers that provide a CID."
    ),
    "provide": Entry(
        ".provide_commands:provide_command", "Announce that the daemon provides CIDs."
    ),
    "get": Entry(
        ".get_command:get_command", "Save a file by CID (-o PATH), or get a record (/ipns/…)."
    ),
    "put": Entry(".routing_commands:put_command", "Store a value record in the DHT."),
    "routing": Entry(
        ".routing_commands:routing_group", "Get or put value records (/ipns/…, /pk/…)."
    ),
    "closest-peers": Entry(
        ".routing_commands:closest_peers_command", "Find the peers closest to a key."
    ),
    "routing-table": Entry(
        ".node_commands:routing_table_command", "Show the routing table, bucket by bucket."
    ),
    "swarm": Entry(".node_commands:swarm_group", "Inspect the daemon's connections."),
    "id": Entry(".p2p_commands:id_command", "Show our identity, or a peer's."),
    "add": Entry(".files_commands:add_command", "Add files (UnixFS), pin and provide them."),
    "cat": Entry(".files_commands:cat_command", "Write a file to stdout (Bitswap if needed)."),
    "block": Entry(".files_commands:block_group", "Get, put or stat raw blocks."),
    "bitswap": Entry(".files_commands:bitswap_group", "Show the daemon's block exchange."),
    "repo": Entry(".files_commands:repo_group", "Collect unpinned blocks; show the blockstore."),
    "ping": Entry(".p2p_commands:ping_command", "Ping a peer over /ipfs/ping/1.0.0."),
}
"""Command name → where it lives and what ``--help`` says about it."""


def summary(name: str) -> str:
    """The ``short_help`` of command ``name`` (what ``zikade --help`` shows)."""
    return COMMANDS[name].summary
