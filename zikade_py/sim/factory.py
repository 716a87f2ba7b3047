"""The real coordinator as the simulator's node factory, and its simulation settings."""

from __future__ import annotations

import random
from dataclasses import replace

from zikade_py.core.coordinator import Coordinator, CoordinatorConfig
from zikade_py.core.key import Key
from zikade_py.sim.driver import CoordinatorFactory, CoordinatorLike


def sim_coordinator_config(*, prefill: bool, explore: bool | None = None) -> CoordinatorConfig:
    """Default coordinator settings, adjusted only where the simulation differs from the wire.

    * Explore targets need no real preimages (nothing is hashed on a wire), which
      spares each walk thousands of SHA-256 computations.
    * A prefilled table already holds the true buckets, so exploring them again at
      start-up only adds traffic: ``explore`` defaults to off with ``prefill`` and
      on for a realistic join (where the walks are part of joining).
    """
    base = CoordinatorConfig()
    enable = (not prefill) if explore is None else explore
    routing = replace(base.routing, explore_preimages=False, enable_explore=enable)
    return replace(base, routing=routing)


def coordinator_factory(config: CoordinatorConfig | None = None) -> CoordinatorFactory:
    """A factory building :class:`Coordinator` nodes that all share ``config``.

    The config is validated once here rather than by each of thousands of nodes
    failing the same way.
    """
    cfg = config or CoordinatorConfig()
    cfg.validate()

    def make(key: Key, rng: random.Random, now: float) -> CoordinatorLike:
        return Coordinator(key, cfg, rng=rng, now=now)

    return make
