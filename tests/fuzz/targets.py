"""Every decoder a remote peer or HTTP client can reach, as fuzz targets for ``scripts/fuzz``.

Each target feeds one decoder the inputs of its existing fuzz tests (the strategies and
scripted streams are imported from those tests, not copied) through the same entry the
node uses, and names the decoder's documented error types: raising one of those is the
decoder refusing bad input; any other exception is a crash (see ``engine.py``).

Targets that drive a layer which swallows unexpected errors (yamux ``feed()`` ends the
session, the kad server counts ``internal_errors``) raise :class:`Crash` when they see
one, so a bug hidden behind a generic close still counts.
"""

from __future__ import annotations

from .engine import Target
from .targets_bitswap import BITSWAP_MESSAGES, DAG_AND_CIDS
from .targets_dht import KAD_MESSAGES, KAD_REQUESTS, RECORDS
from .targets_http import ROUTING_V1, ROUTING_V1_HTTP
from .targets_p2p import (
    IDENTIFY,
    MSS,
    MULTIADDR,
    NOISE_HANDSHAKE,
    NOISE_TRANSPORT,
    PEER_ID,
    YAMUX,
)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        MSS,
        NOISE_HANDSHAKE,
        NOISE_TRANSPORT,
        YAMUX,
        IDENTIFY,
        KAD_MESSAGES,
        KAD_REQUESTS,
        RECORDS,
        MULTIADDR,
        PEER_ID,
        ROUTING_V1,
        ROUTING_V1_HTTP,
        BITSWAP_MESSAGES,
        DAG_AND_CIDS,
    )
}
"""Every decoder, in the order ``scripts/fuzz`` runs them."""
