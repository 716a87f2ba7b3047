"""Content-addressed blocks: CIDs as bytes, the blockstore contract, an in-memory store and
a persistent one under the repo (files for blocks, SQLite for pins)."""

from zikade_py.blocks.filestore import BLOCKS_DIRNAME, FileBlockstore, StoreClosedError
from zikade_py.blocks.store import (
    Blockstore,
    BlockstoreFullError,
    BlockstoreStat,
    GcResult,
    MemoryBlockstore,
)

__all__ = [
    "BLOCKS_DIRNAME",
    "Blockstore",
    "BlockstoreFullError",
    "BlockstoreStat",
    "FileBlockstore",
    "GcResult",
    "MemoryBlockstore",
    "StoreClosedError",
]
