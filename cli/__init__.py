"""The ``zikade`` command line, installed as the package ``zikade_cli`` (see pyproject.toml).

Imports inside this folder are relative, so it runs under that name from an
installed wheel and under ``cli`` when mypy checks the folder in place.
"""
