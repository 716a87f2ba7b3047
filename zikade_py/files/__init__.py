"""Files on the node: :class:`ContentNode` (a DHT node with a blockstore and Bitswap)
and its ``add`` / ``cat`` / ``get_block`` / ``put_block`` API."""

from zikade_py.files.node import AddResult, ContentNode

__all__ = ["AddResult", "ContentNode"]
