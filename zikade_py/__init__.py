"""zikade-py: a Kademlia DHT node that speaks the libp2p wire protocol.

The package is layered (DESIGN.md §1): ``core`` is the sans-IO Kademlia logic,
``p2p`` the libp2p host on asyncio, ``dht`` the Kademlia protocol on that host,
``sim`` a discrete-event simulator driving the core in virtual time.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
