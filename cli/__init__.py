"""The ``zikade`` command line."""
