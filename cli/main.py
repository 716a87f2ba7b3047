"""Entry point of the ``zikade`` command (click).

Commands, by module: ``init`` and ``bootstrap`` (:mod:`cli.repo_commands`),
``daemon`` (:mod:`cli.daemon_command`), ``devnet`` (:mod:`cli.devnet`), the
routing commands (:mod:`cli.routing_commands`), ``routing-table`` and
``swarm peers`` (:mod:`cli.node_commands`), and ``id`` / ``ping``
(:mod:`cli.p2p_commands`, made daemon-aware by :mod:`cli.daemon_aware`).
"""

from __future__ import annotations

import click

from cli import daemon_command, devnet, node_commands, repo_commands, routing_commands
from cli.daemon_aware import daemon_aware_id, daemon_aware_ping
from cli.p2p_commands import id_command, ping_command
from zikade_py import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zikade")
def cli() -> None:
    """A Kademlia DHT node that speaks the libp2p protocol.

    Commands use the daemon of the repo (--repo / ZIKADE_PATH, default ~/.zikade)
    when it runs, and an ephemeral in-process node otherwise.
    """


for _command in (
    *repo_commands.COMMANDS,
    *daemon_command.COMMANDS,
    *devnet.COMMANDS,
    *routing_commands.COMMANDS,
    *node_commands.COMMANDS,
    daemon_aware_id(id_command),
    daemon_aware_ping(ping_command),
):
    cli.add_command(_command)


def main() -> None:
    """Run the ``zikade`` command line."""
    cli()


if __name__ == "__main__":
    main()
