"""What every routing walk (bootstrap, explore) is configured with."""

from __future__ import annotations

from dataclasses import dataclass

from zikade_py.core.query import QueryConfig


@dataclass(frozen=True, slots=True)
class WalkConfig:
    """Knobs of one routing walk; α, k and request timeout follow go (WIRE.md §9)."""

    timeout: float = 60.0
    """Seconds a whole walk may take before it finishes with TIMEOUT."""
    request_concurrency: int = 10
    """α: requests in flight."""
    request_timeout: float = 10.0
    """Seconds a node has to answer."""
    num_results: int = 20
    """k: the walk is done once the k closest nodes found have answered."""

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration no walk could use."""
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.query_config().validate()

    def query_config(self) -> QueryConfig:
        """The configuration of the walk's query."""
        return QueryConfig(
            concurrency=self.request_concurrency,
            num_results=self.num_results,
            request_timeout=self.request_timeout,
        )
