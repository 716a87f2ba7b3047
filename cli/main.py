"""Entry point of the ``zikade`` command (click).

Commands, by module: ``init`` and ``bootstrap`` (:mod:`cli.repo_commands`),
``daemon`` (:mod:`cli.daemon_command`), ``devnet`` (:mod:`cli.devnet`), the
routing commands (:mod:`cli.routing_commands`), ``routing-table`` and
``swarm peers`` (:mod:`cli.node_commands`), and ``id`` / ``ping``
(:mod:`cli.p2p_commands`, made daemon-aware by :mod:`cli.daemon_aware`).

Each module is imported only when its command runs: a command answered by the
daemon then never loads the DHT stack, which keeps every invocation quick.
"""

from __future__ import annotations

import importlib

import click

from zikade_py import __version__

LAZY_COMMANDS: dict[str, str] = {
    "init": "cli.repo_commands:init_command",
    "bootstrap": "cli.repo_commands:bootstrap_group",
    "daemon": "cli.daemon_command:daemon_command",
    "devnet": "cli.devnet:devnet_command",
    "find-peer": "cli.routing_commands:find_peer_command",
    "find-providers": "cli.routing_commands:find_providers_command",
    "provide": "cli.routing_commands:provide_command",
    "get": "cli.routing_commands:get_command",
    "put": "cli.routing_commands:put_command",
    "closest-peers": "cli.routing_commands:closest_peers_command",
    "routing-table": "cli.node_commands:routing_table_command",
    "swarm": "cli.node_commands:swarm_group",
    "id": "cli.daemon_aware:id_command",
    "ping": "cli.daemon_aware:ping_command",
}
"""Command name → ``module:attribute`` of its click command."""


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted (for ``--help``)."""
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the command, or None for an unknown name."""
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zikade")
def cli() -> None:
    """A Kademlia DHT node that speaks the libp2p protocol.

    Commands use the daemon of the repo (--repo / ZIKADE_PATH, default ~/.zikade)
    when it runs, and an ephemeral in-process node otherwise.
    """


def main() -> None:
    """Run the ``zikade`` command line."""
    cli()


if __name__ == "__main__":
    main()
