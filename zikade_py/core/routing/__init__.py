"""The routing state machines: they keep the routing table filled and truthful.

* :mod:`~zikade_py.core.routing.bootstrap` — a self-lookup seeded with known nodes.
* :mod:`~zikade_py.core.routing.include` — candidates are checked before they enter the table.
* :mod:`~zikade_py.core.routing.probe` — periodic liveness checks; failures leave the table.
* :mod:`~zikade_py.core.routing.explore` — scheduled random walks, one per bucket depth.
* :mod:`~zikade_py.core.routing.cpl` — random keys at an exact common prefix length.

The coordinator owns one of each and translates its inputs into their events.
Like every core machine they take ``now`` explicitly and never block.
"""
