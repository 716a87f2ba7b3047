"""Entry point of the ``zikade`` command (click).

Commands, by module: ``init`` and ``bootstrap`` (:mod:`.repo_commands`),
``daemon`` (:mod:`.daemon_command`), ``devnet`` (:mod:`.devnet`), the routing
commands (:mod:`.routing_commands`), ``routing-table`` and ``swarm peers``
(:mod:`.node_commands`), and ``id`` / ``ping`` (:mod:`.daemon_aware`).

Start-up is the point of this module: people run ``zikade`` in loops. A
command's module is imported only when that command runs, and ``--help``
lists the commands from :data:`.registry.COMMANDS` without importing any of
them. Only click and the standard library load before a command is chosen.
"""

from __future__ import annotations

import importlib

import click

from zikade_py import __version__

from .registry import COMMANDS


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted (for ``--help``)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the command, or None for an unknown name."""
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry.target.split(":")
        command = getattr(importlib.import_module(module_name, __package__), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from the registry (no command module is imported)."""
        rows = [(name, COMMANDS[name].summary) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zikade")
def cli() -> None:
    """A Kademlia DHT node that speaks the libp2p protocol.

    Run 'zikade init' first. Commands use the daemon of the repo (--repo /
    ZIKADE_PATH, default ~/.zikade) when it runs; without one, the query
    commands run an ephemeral in-process node (provide refuses to, see
    'zikade provide --help').
    """


def main() -> None:
    """Run the ``zikade`` command line."""
    cli()


if __name__ == "__main__":
    main()
