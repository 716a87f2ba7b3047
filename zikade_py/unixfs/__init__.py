"""UnixFS files: the dag-pb codec, an importer whose root CIDs equal
``ipfs-unixfs-importer``'s, and a streaming exporter over any block source."""

from zikade_py.unixfs.exporter import (
    BlockNotFoundError,
    BlockSource,
    CorruptDagError,
    NotAFileError,
    StoreSource,
    cat,
)
from zikade_py.unixfs.importer import (
    DEFAULT_PROFILE,
    HELIA_2025_PROFILE,
    PROFILES,
    Block,
    Profile,
    import_bytes,
    import_chunks,
    import_stream,
)

__all__ = [
    "DEFAULT_PROFILE",
    "HELIA_2025_PROFILE",
    "PROFILES",
    "Block",
    "BlockNotFoundError",
    "BlockSource",
    "CorruptDagError",
    "NotAFileError",
    "Profile",
    "StoreSource",
    "cat",
    "import_bytes",
    "import_chunks",
    "import_stream",
]
