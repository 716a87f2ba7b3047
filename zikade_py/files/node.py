"""A DHT node that also stores blocks and exchanges them: add a file, fetch a file.

:class:`ContentNode` is the :class:`~zikade_py.dht.node.Node` plus a blockstore
(files under ``<repo>/blocks`` with a repo, memory without) and a
:class:`~zikade_py.bitswap.Bitswap` exchange on the same host, whose sessions
find providers through this node's own ``find_providers``. It adds the Python
API of issue 13:

* ``await node.add(path_or_bytes)`` — import as UnixFS (a profile decides the
  CID), store, pin, provide the root through the DHT at once and hand every block
  to the reprovide sweep (:data:`PROVIDE_STRATEGIES`);
* ``node.cat(cid)`` — the file's bytes as an async iterator, local blocks first,
  the rest through Bitswap, every block checked against its CID;
* ``await node.get_block(cid)`` / ``await node.put_block(data)``.

A ``cat`` runs in the current ``zikade_py.session()`` (or one of its own), so
several ``cat`` calls in one session share peers and never ask for a block twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiformats import CID

from zikade_py import telemetry
from zikade_py.bitswap import Bitswap, BitswapConfig, ExchangeSession
from zikade_py.blocks import BLOCKS_DIRNAME, Blockstore, FileBlockstore, MemoryBlockstore
from zikade_py.blocks import cid as cids
from zikade_py.blocks.limits import StorageLimits
from zikade_py.blocks.store import GcResult
from zikade_py.dht.config import BroadcastResult, NodeConfig
from zikade_py.dht.node import Node
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID
from zikade_py.unixfs import DEFAULT_PROFILE, Profile, cat, import_stream
from zikade_py.unixfs.exporter import decode_file_node, file_size

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024
"""Bytes read from a file at a time while adding (off the event loop)."""
PUT_BATCH = 32
"""Blocks stored per write while adding."""
PROVIDE_STRATEGIES = ("pinned", "roots")
"""What a node announces of the files it adds (Kubo's ``Provide.Strategy``).

``pinned`` (default): every block of every pinned file, so any block or sub-DAG
of it can be found through the DHT, as with Kubo's default ``all`` (which also
announces every cached block; we do not: a fetched block is unpinned cache the
GC may drop at any time, and a provider record for it would send peers to a
block we no longer have). With the reprovide sweep the extra keys cost little:
they are announced in region batches, not one lookup each. Under the classic
reprovider every key is its own lookup, so only the roots are provided there.
``roots``: only the root CIDs (Kubo's ``roots``), for very large files on
nodes that want few provider records."""


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add`` made: the root CID (text), the file size and the blocks written."""

    cid: str
    size: int
    blocks: int
    provided: BroadcastResult | None
    """The DHT announcement (``None`` when not provided)."""


class SessionSource:
    """The exporter's block source over one exchange session (blocks come in order)."""

    __slots__ = ("_session",)

    def __init__(self, session: ExchangeSession) -> None:
        self._session = session

    async def fetch(self, wanted: Sequence[bytes]) -> AsyncIterator[bytes]:
        """See :class:`zikade_py.unixfs.BlockSource`."""
        async for _, data in self._session.get_blocks(wanted):
            yield data


class ContentNode(Node):
    """A DHT node with a blockstore and Bitswap (see the module docstring)."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        blockstore: Blockstore | None = None,
        max_blockstore_bytes: int | None = None,
        storage: StorageLimits | None = None,
        bitswap: BitswapConfig | None = None,
        announce_pins: bool = False,
        provide_strategy: str = "pinned",
    ) -> None:
        super().__init__(config)
        if provide_strategy not in PROVIDE_STRATEGIES:
            raise ValueError(f"provide_strategy must be one of {PROVIDE_STRATEGIES}")
        self.provide_strategy = provide_strategy
        """What ``add`` hands the reprovider: ``pinned`` (every block of what we add and
        pin, the default) or ``roots`` (the root CIDs only); see :data:`PROVIDE_STRATEGIES`."""
        self._given_store = blockstore
        if storage is None:
            storage = StorageLimits(max_bytes=max_blockstore_bytes)
        self.storage = storage
        """The blockstore's cap and GC watermark (``Datastore.StorageMax`` and
        ``StorageGCWatermark`` of the repo's config for the daemon)."""
        self._max_bytes = storage.max_bytes
        self._gc_lock = asyncio.Lock()
        self._bitswap_config = bitswap
        self._announce_pins = announce_pins
        self._blockstore: Blockstore | None = None
        self._bitswap: Bitswap | None = None

    @property
    def blockstore(self) -> Blockstore:
        """Where blocks live."""
        if self._blockstore is None:
            raise RuntimeError("node not started")
        return self._blockstore

    @property
    def bitswap(self) -> Bitswap:
        """The block exchange."""
        if self._bitswap is None:
            raise RuntimeError("node not started")
        return self._bitswap

    async def _start(self) -> None:
        await super()._start()
        if self._given_store is not None:
            self._blockstore = self._given_store
        elif self.config.repo is not None:
            root = Path(self.config.repo).expanduser() / BLOCKS_DIRNAME
            self._blockstore = await FileBlockstore.open(root, self._max_bytes)
        else:
            self._blockstore = MemoryBlockstore(self._max_bytes)
        self._bitswap = Bitswap(
            self.host, self._blockstore, find_providers=self._providers,
            config=self._bitswap_config,
        )
        await self._bitswap.start()
        if self.storage.max_bytes is not None:
            self._spawn(self._gc_loop(), "files-gc-watermark")
        if self._announce_pins:
            self._spawn(self._provide_pins(), "files-announce-pins")

    async def close(self) -> None:
        """Stop the exchange, then the node, then close the blockstore."""
        if self._bitswap is not None:
            await self._bitswap.close()
        await super().close()
        if self._blockstore is not None and self._given_store is None:
            await self._blockstore.close()

    # -- storage limit ----------------------------------------------------------------------

    async def collect_if_over(self) -> GcResult | None:
        """Collect unpinned blocks, oldest first, when the store is over the GC watermark
        (down to ten points below it); ``None`` when it was not over. Runs after every
        add, put and fetch through this node, and every ``storage.gc_period``."""
        trigger, target = self.storage.trigger_bytes, self.storage.target_bytes
        if trigger is None or target is None or self.blockstore.stat().bytes <= trigger:
            return None
        async with self._gc_lock:
            if self.blockstore.stat().bytes <= trigger:
                return None
            result = await self.blockstore.gc(target)
        log.info("blockstore over its GC watermark: collected %d blocks (%d bytes)",
                 result.blocks, result.bytes)
        return result

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.storage.gc_period)
            try:
                await self.collect_if_over()
            except Exception:
                log.exception("blockstore collection failed")

    async def _providers(self, cid: bytes) -> AsyncIterator[tuple[PeerID, Sequence[Multiaddr]]]:
        async for info in self.find_providers(CID.decode(cid), count=0):
            yield info.peer_id, info.addrs

    async def _provide_pins(self) -> None:
        """Provide what is pinned once after start (a daemon serving what was added
        while it was not running). With the sweep the keys it already has change
        nothing and new ones go out in its next burst; classic announces each root."""
        store = self.blockstore
        if self.reprovider is not None:
            if not self.self_info().addrs:
                return
            keys = [cids.multihash_of(r) for r in store.pins()]
            if self.provide_strategy == "pinned":
                keys.extend(store.pinned_multihashes())
            await self.reprovider.provide(list(dict.fromkeys(keys)))
            return
        for root in store.pins():
            try:
                await self.provide(CID.decode(root))
            except Exception as exc:
                log.debug("announcing %s failed: %r", root.hex(), exc)

    # -- files ------------------------------------------------------------------------------

    async def add(
        self,
        source: bytes | str | os.PathLike[str] | AsyncIterable[bytes],
        *,
        profile: Profile = DEFAULT_PROFILE,
        pin: bool = True,
        provide: bool = True,
        timeout: float | None = None,
    ) -> AddResult:
        """Import ``source`` (bytes, a file path, or an async stream of bytes) as a UnixFS
        file; store and pin its blocks; provide the root through the DHT."""
        with telemetry.tracer().start_as_current_span("Files.Add"):
            pending = b"pending:" + secrets.token_bytes(8)
            written: list[bytes] = []
            size = 0
            last: bytes | None = None
            store = self.blockstore
            try:
                batch: list[tuple[bytes, bytes]] = []
                async for block in import_stream(_reads(source), profile):
                    batch.append((block.cid, block.data))
                    written.append(block.cid)
                    if cids.codec_of(block.cid) == cids.RAW:
                        size += len(block.data)
                    last = block.cid
                    if len(batch) >= PUT_BATCH:
                        await self.bitswap.put_blocks(batch, pin=pending)
                        batch = []
                if batch:
                    await self.bitswap.put_blocks(batch, pin=pending)
                assert last is not None
                if pin:
                    await store.pin(last, written)
            finally:  # a cancelled or failed add leaves no pin behind: its blocks are GC-able
                await asyncio.shield(store.unpin(pending))
            await self.collect_if_over()
            provided = None
            if provide and self.self_info().addrs:
                # the root now (a reader can find it at once), and into the reprovider's
                # keys; under "pinned" the other blocks join the sweep's next burst
                provided = await self.provide(CID.decode(last), timeout=timeout)
                if pin and self.provide_strategy == "pinned" and self.reprovider is not None:
                    await self.reprovider.provide(
                        [cids.multihash_of(c) for c in written if c != last]
                    )
            return AddResult(cids.to_str(last), size, len(written), provided)

    async def cat(
        self, cid: str | bytes | CID, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of the file ``cid``: local blocks first, the rest through Bitswap
        (providers found through the DHT); every block is checked against its CID.
        ``timeout`` bounds the wait for each next chunk (no progress for that long)."""
        root = cids.to_bytes(cid)
        with telemetry.tracer().start_as_current_span("Files.Cat") as span:
            span.set_attribute("cid", cids.to_str(root))
            # created inside the span: the session's provider searches and sends are its
            # children (one trace per cat, or per session when several cats share one)
            session, ephemeral = self.bitswap.session()
            try:
                stream = cat(root, SessionSource(session))
                async with contextlib.aclosing(stream):
                    while True:
                        try:
                            async with asyncio.timeout(timeout):
                                chunk = await anext(stream)
                        except StopAsyncIteration:
                            return
                        yield chunk
            finally:
                if ephemeral:
                    session.stop()
                    await session.wait_stopped()
                await self.collect_if_over()

    async def size_of_file(self, cid: str | bytes | CID) -> int:
        """A file's size from its root block (fetched if not local)."""
        root = cids.to_bytes(cid)
        session, ephemeral = self.bitswap.session()
        try:
            return await file_size(root, SessionSource(session))
        finally:
            if ephemeral:
                session.stop()
                await session.wait_stopped()

    async def is_local(self, cid: str | bytes | CID) -> bool:
        """Whether every block of the file ``cid`` is in the blockstore (reads only its
        dag-pb nodes; the leaves are checked in the index)."""
        store = self.blockstore
        pending = [cids.to_bytes(cid)]
        while pending:
            current = pending.pop()
            if not store.has(current):
                return False
            if cids.codec_of(current) != cids.DAG_PB:
                continue
            data = await store.get(current)
            if data is None:
                return False
            node, _ = decode_file_node(data)
            pending.extend(link.hash for link in node.links)
        return True

    async def get_block(self, cid: str | bytes | CID, *, timeout: float | None = None) -> bytes:
        """One block, from the store or the network (checked against its CID)."""
        async with asyncio.timeout(timeout):
            data = await self.bitswap.get_block(cids.to_bytes(cid))
        await self.collect_if_over()
        return data

    async def put_block(self, data: bytes, *, codec: int = cids.RAW, pin: bool = False) -> str:
        """Store ``data`` as a block (CIDv1, sha2-256) and return its CID."""
        cid = cids.make(data, codec)
        await self.bitswap.put_blocks([(cid, data)], pin=cid if pin else None)
        await self.collect_if_over()
        return cids.to_str(cid)


async def _reads(source: Any) -> AsyncIterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    if isinstance(source, str | os.PathLike):
        f = await asyncio.to_thread(open, source, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, READ_SIZE):
                yield chunk
        finally:
            f.close()
        return
    async for chunk in source:
        yield chunk


__all__ = ["PROVIDE_STRATEGIES", "AddResult", "ContentNode", "SessionSource"]
