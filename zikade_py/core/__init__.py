"""The sans-IO Kademlia core: keys, routing table, state machines, coordinator.

Nothing here performs I/O or reads a clock: every machine is advanced with the
current time passed in as ``now`` (seconds, float), which is what lets the
asyncio node and the simulator drive exactly the same logic (DESIGN.md §1–2).
"""
