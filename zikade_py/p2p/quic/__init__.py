"""libp2p over QUIC (``/quic-v1``): aioquic's sans-IO connection driven by our own asyncio code.

``hooks`` is the only module that touches aioquic internals (client certificates, the
peer certificate check, handshake confirmation, send-buffer size); ``stream`` and
``session`` adapt one connection to the host's muxed-connection seam; ``endpoint`` owns
one UDP socket shared by inbound and outbound connections; ``transport`` is what the
host calls.
"""
