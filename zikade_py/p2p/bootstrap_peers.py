"""The public network's default bootstrap peers: Kubo's list (``config/bootstrap_peers.go``).

``zikade init`` writes it into a new repo and :class:`~zikade_py.dht.config.NodeConfig`
starts from it, so a node on a fresh machine joins the public Amino DHT without
being told where. The ``/dnsaddr`` entries resolve through the TXT records at
``_dnsaddr.bootstrap.libp2p.io`` (p2p/dns.py); ``mars.i.ipfs.io`` is listed twice,
over TCP and over QUIC, as Kubo has it (the seeds of one peer are merged into one
dial, dht/seeds.py). No import here: the command line reads this list without
loading the network stack.
"""

from __future__ import annotations

from typing import Final

DEFAULT_BOOTSTRAP_PEERS: Final[tuple[str, ...]] = (
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/dnsaddr/va1.bootstrap.libp2p.io/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
    "/ip4/104.131.131.82/udp/4001/quic-v1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
)
"""Kubo's ``DefaultBootstrapAddresses`` (ipfs/kubo ``config/bootstrap_peers.go``)."""

__all__ = ["DEFAULT_BOOTSTRAP_PEERS"]
