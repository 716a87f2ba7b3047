"""Fuzz target of the Delegated Routing V1 server's request inputs (see ``targets.py``)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import strategies as st

from zikade_py.http.routing_v1_util import (
    MEDIA_IPNS_RECORD,
    BadIdError,
    FilterError,
    RecordFilter,
    accepts_exactly,
    parse_cid,
    parse_key,
    parse_peer_id,
    wants_ndjson,
)

from .cases import B58, ID_TEXT, MA_WORDS, PEER, cases, dispatch
from .engine import Target

# --- routing v1 HTTP inputs ------------------------------------------------------------------

_VALID_IDS = [
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    PEER.to_base58(),
    PEER.to_cid_string("base32"),
    PEER.to_cid_string("base36"),
]


@st.composite
def _mangled_id(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_VALID_IDS))
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 3))
    return text[:at] + draw(st.text(alphabet=B58 + "=-_/%", max_size=3)) + text[at + cut :]


_path_ids = st.one_of(ID_TEXT, _mangled_id())


def _routing_path(text: str) -> None:
    for parse in (parse_cid, parse_peer_id, parse_key):
        with contextlib.suppress(BadIdError):
            parse(text)


_filter_terms = st.lists(
    st.one_of(
        st.sampled_from(
            ["tcp", "!ip6", "quic-v1", "webtransport", "unknown", "!", "", " ", "ip4/x"]
        ),
        st.text(max_size=12),
    ),
    max_size=8,
).map(",".join)
_record = st.fixed_dictionaries(
    {"Schema": st.just("peer"), "ID": st.just("x")},
    optional={
        "Addrs": st.lists(
            st.one_of(st.text(max_size=30), MA_WORDS.map(lambda w: f"/{w}/")), max_size=4
        ),
        "Protocols": st.lists(st.text(max_size=20), max_size=3) | st.none(),
    },
)


def _routing_filter(addrs: str | None, protocols: str | None, record: dict[str, Any]) -> None:
    RecordFilter.from_query(addrs, protocols).apply(record)


_media = st.one_of(
    st.sampled_from(
        ["application/json", "application/x-ndjson", MEDIA_IPNS_RECORD, "*/*", "application/*"]
    ),
    st.text(max_size=20),
)
_accept = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.lists(
        st.tuples(_media, st.one_of(st.just(""), st.text(max_size=8).map(lambda q: f";q={q}"))),
        max_size=4,
    ).map(lambda parts: ", ".join(media + q for media, q in parts)),
)


def _routing_accept(accept: str | None) -> None:
    wants_ndjson(accept)
    accepts_exactly(accept, MEDIA_IPNS_RECORD)


ROUTING_V1 = Target(
    "routing_v1",
    "Delegated Routing V1 request inputs: {cid} / {peer-id} / {key} / IPNS {name} path "
    "segments, filter-addrs and filter-protocols query values, Accept headers",
    cases(
        path=_path_ids,
        filter=st.tuples(st.none() | _filter_terms, st.none() | _filter_terms, _record),
        accept=_accept,
    ),
    dispatch({"path": _routing_path, "filter": _routing_filter, "accept": _routing_accept}),
    (BadIdError, FilterError),
)
