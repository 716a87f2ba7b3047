"""Entry point of the ``zikade`` command (click)."""

from __future__ import annotations

import click

from cli.p2p_commands import COMMANDS as P2P_COMMANDS
from zikade_py import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zikade")
def cli() -> None:
    """A Kademlia DHT node that speaks the libp2p protocol."""


for _command in P2P_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Run the ``zikade`` command line."""
    cli()


if __name__ == "__main__":
    main()
