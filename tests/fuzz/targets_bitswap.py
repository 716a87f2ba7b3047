"""Fuzz targets of the block exchange's decoders: bitswap messages (and the engine that
consumes them), dag-pb / UnixFS nodes, CIDs and bitswap CID prefixes (see ``targets.py``)."""

from __future__ import annotations

import contextlib

from google.protobuf.message import DecodeError
from hypothesis import strategies as st

from zikade_py.bitswap import wire
from zikade_py.bitswap.engine import Engine
from zikade_py.bitswap.pb import message_pb2 as pb
from zikade_py.blocks import cid as cids
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.unixfs import CorruptDagError, NotAFileError, dagpb
from zikade_py.unixfs.exporter import decode_file_node

from .cases import cases, dispatch
from .engine import Crash, Target

_PEER = PeerID.from_public_key(PrivateKey.from_seed(b"\x03" * 32).public_key)
_GOOD_CIDS = [cids.make(bytes([i])) for i in range(4)] + [
    cids.make(b"pb", cids.DAG_PB, version=0)
]
_cid_bytes = st.one_of(st.sampled_from(_GOOD_CIDS), st.binary(max_size=40))

_entries = st.lists(
    st.builds(
        lambda c, p, cancel, t, d: pb.Message.Wantlist.Entry(
            block=c, priority=p, cancel=cancel, wantType=t, sendDontHave=d
        ),
        _cid_bytes, st.integers(-(2**31), 2**31 - 1), st.booleans(), st.integers(0, 3),
        st.booleans(),
    ),
    max_size=8,
)
_structured = st.builds(
    lambda entries, full, blocks, payload, presences: pb.Message(
        wantlist=pb.Message.Wantlist(entries=entries, full=full), blocks=blocks,
        payload=payload, blockPresences=presences,
    ).SerializeToString(),
    _entries, st.booleans(), st.lists(st.binary(max_size=64), max_size=3),
    st.lists(st.builds(lambda p, d: pb.Message.Block(prefix=p, data=d),
                       st.one_of(st.sampled_from([cids.prefix(c) for c in _GOOD_CIDS]),
                                 st.binary(max_size=12)),
                       st.binary(max_size=64)), max_size=3),
    st.lists(st.builds(lambda c, t: pb.Message.BlockPresence(cid=c, type=t),
                       _cid_bytes, st.integers(0, 3)), max_size=4),
)
_body = st.one_of(st.binary(max_size=512), _structured)


def _decode(data: bytes) -> None:
    msg = wire.decode(data)
    for cid, block in msg.blocks:
        if not cids.verify(cid, block):
            raise Crash("a decoded block is not named by its own hash")
    for proto in wire.PROTOCOLS:
        wire.decode(wire.encode(msg, proto))  # what we accept we can re-encode


def _engine(bodies: list[bytes]) -> None:
    engine = Engine(lambda c: 10 if c in _GOOD_CIDS[:2] else None, max_entries=4)
    for data in bodies:
        with contextlib.suppress(wire.WireError):
            engine.receive(_PEER, wire.decode(data))
        if len(engine.wantlist(_PEER)) > 4:
            raise Crash("engine kept more entries than its cap")
        for _ in range(20):
            if not engine.poll():
                break
    engine.peer_gone(_PEER)
    if engine.peers or engine.pending:
        raise Crash("engine kept state of a gone peer")


BITSWAP_MESSAGES = Target(
    "bitswap_messages",
    "bitswap messages (bitswap/wire.py) and the engine's want lists fed by them",
    cases(decode=_body, engine=st.lists(_body, min_size=1, max_size=4).map(lambda b: (b,))),
    dispatch({"decode": _decode, "engine": _engine}),
    (wire.WireError,),
)


def _dagpb(data: bytes) -> None:
    node = dagpb.decode(data)
    if dagpb.decode(dagpb.encode(node)) != node:
        raise Crash("dag-pb does not round-trip")
    with contextlib.suppress(NotAFileError, CorruptDagError):
        decode_file_node(data)


def _cid(data: bytes) -> None:
    version, codec, mh = cids.parse(data)
    if cids.multihash_of(data) != mh or cids.codec_of(data) != codec:
        raise Crash("cid accessors disagree with parse")
    del version


def _prefix(pfx: bytes, data: bytes) -> None:
    cid = cids.from_prefix(pfx, data)
    if not cids.verify(cid, data):
        raise Crash("from_prefix made a CID its data does not verify against")


DAG_AND_CIDS = Target(
    "dag_and_cids",
    "dag-pb nodes with UnixFS data (unixfs/dagpb.py, exporter), CIDs and bitswap prefixes",
    cases(dagpb=st.binary(max_size=300), cid=st.binary(max_size=48),
          prefix=st.tuples(st.binary(max_size=12), st.binary(max_size=32))),
    dispatch({"dagpb": _dagpb, "cid": _cid, "prefix": _prefix}),
    (dagpb.DagPBError, cids.InvalidCIDError, DecodeError),
)
