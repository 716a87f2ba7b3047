"""Named network models: ``--preset amino`` stands for the public IPFS DHT.

The Amino preset takes its shares from published measurements of the live
network and states where each number comes from; what no measurement gave us
directly is marked as our assumption.

* **Undialable share of routing-table entries: 12 %.** The SIGCOMM'22 paper
  "Design and Evaluation of IPFS: A Storage Layer for the Decentralized Web"
  (Trautwein et al., arXiv 2208.05877), as summarised in its IETF 118 talk
  (probelab.io/talks/design-and-evaluation-of-ipfs-ietf/), puts today's
  stable (reachable) DHT-server baseline at 85–90 % (55–60 % in 2021); we take
  the middle, 88 % reachable, so 12 % of the servers other nodes know of hang
  when dialled.
* **Client-mode share: 25 %.** Henningsen et al., "Mapping the Interplanetary
  Filesystem" (IFIP Networking 2020, arXiv 2002.07747), found roughly 70–80 %
  of the nodes they saw actively serve the DHT; the rest are clients. ProbeLab's
  KPIs (probelab.io/ipfs/kpi/, client vs server estimate) count clients
  separately for the same reason. We take the middle: 25 % clients.
* **Unresponsive (accepts, never answers): 3 %.** Our assumption: a small share
  of overloaded or stuck servers, on top of the undialable ones; no published
  figure separates them.
* **Latency: log-normal, median one-way 40 ms (80 ms RTT), sigma 0.6; jitter
  up to 20 % per message.** Our assumption for a world-wide peer mix, checked
  against the SIGCOMM'22 result that 80 % of DHT retrievals from the EU
  resolved within 500 ms.
* **Handshake: 2 round trips on first contact.** TCP + Noise + Yamux costs 3
  (SYN, Noise XX with pipelined multistream), QUIC 1; Amino peers use both, so
  we take 2. Later requests reuse the connection.
* **Stream set-up: 0 round trips.** go-libp2p (most of Amino) negotiates the
  kad protocol lazily, pipelined with the first request.
* **Dial timeout: 5 s.** go-libp2p's dial timeout for a single address (the
  swarm gives up on a dead peer after about that long; the request deadline of
  10 s caps it anyway).

What the preset should reproduce, for comparison: ProbeLab's Optimistic Provide
study (probelab.io/blog/optimistic-provide, INFOCOM 2024) measured classic
provides at a median above 13 s (often close to 20 s) and optimistic provides
below 1 s; the 2022 proposal (discuss.libp2p.io/t/dht-optimistic-provide/1143)
noted that the closest peers are typically discovered in under one second.
"""

from __future__ import annotations

from zikade_py.sim.network import LatencyConfig, NetworkConfig

AMINO = NetworkConfig(
    latency=LatencyConfig(median=0.040, sigma=0.6),
    jitter=0.2,
    handshake_rtts=2.0,
    stream_rtts=0.0,
    dial_timeout=5.0,
    undialable=0.12,
    clients=0.25,
    unresponsive=0.03,
)
"""The public IPFS DHT (Amino), as measured; see the module docstring for sources."""

PRESETS: dict[str, NetworkConfig] = {"amino": AMINO}
"""Preset network models by the name ``--preset`` takes."""
