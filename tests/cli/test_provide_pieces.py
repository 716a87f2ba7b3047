"""``zikade provide --from-file``'s reading side without a daemon: the list is cut into
requests as it is read (never held at once), line numbers carry across requests, and the
RPC side decodes each line once and names a bad one with what was provided before it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from multiformats import CID, multihash
from zikade_cli.provide_commands import CHUNK_BYTES, CHUNK_LINES, pieces

from zikade_py.http.errors import ArgumentError
from zikade_py.http.provide_ops import MAX_LINE, parse_cid_lines


def cid(i: int) -> bytes:
    """A CIDv1 (raw, sha2-256, base32) built by hand: multiformats is slow for thousands."""
    raw = b"\x01\x55\x12\x20" + hashlib.sha256(f"p-{i}".encode()).digest()
    return b"b" + base64.b32encode(raw).rstrip(b"=").lower()


def test_cid_helper_makes_cids() -> None:
    assert str(CID("base32", 1, "raw", multihash.digest(b"p-3", "sha2-256"))).encode() == cid(3)


def test_requests_carry_at_most_chunk_lines_cids_and_their_first_line_number() -> None:
    lines = [b"# header\n", b"\n"] + [cid(i) + b"\n" for i in range(2 * CHUNK_LINES + 5)]
    out = list(pieces(lines))
    assert [first for first, _ in out] == [1, CHUNK_LINES + 3, 2 * CHUNK_LINES + 3]
    bodies = [parse_cid_lines(body, first) for first, body in out]
    assert [len(b) for b in bodies] == [CHUNK_LINES, CHUNK_LINES, 5]
    assert bodies[2][-1] == CID.decode(cid(2 * CHUNK_LINES + 4).decode()).digest


def test_requests_stay_under_the_body_limit() -> None:
    long_cid = b"z" + b"2" * 400  # syntactically long lines (the daemon judges them)
    out = list(pieces([long_cid + b"\n"] * (CHUNK_BYTES // 400 + 10)))
    assert len(out) == 2
    assert all(len(body) <= CHUNK_BYTES + MAX_LINE + 1 for _, body in out)


def test_the_list_is_read_as_it_is_sent() -> None:
    read = 0

    def endless() -> Iterator[bytes]:
        nonlocal read
        while True:
            read += 1
            yield cid(read) + b"\n"

    it = pieces(endless())
    first, body = next(it)
    assert first == 1 and body.count(b"\n") == CHUNK_LINES - 1
    assert read == CHUNK_LINES, "more was read than the first request needs"


def test_a_line_too_long_is_named_with_what_was_provided() -> None:
    lines = [cid(i) + b"\n" for i in range(CHUNK_LINES + 2)] + [b"b" + b"a" * MAX_LINE + b"\n"]
    it = pieces(lines)
    assert next(it)[0] == 1
    with pytest.raises(ArgumentError) as caught:
        next(it)
    assert str(caught.value) == (
        f"line {CHUNK_LINES + 3}: too long for a CID "
        f"(lines 1-{CHUNK_LINES} were provided, nothing from line {CHUNK_LINES + 1} on)"
    )


def test_bad_lines_name_their_number_in_the_users_input() -> None:
    body = cid(1) + b"\n\n# c\nnot-a-cid\n"
    with pytest.raises(ArgumentError) as caught:
        parse_cid_lines(body)
    assert str(caught.value).startswith("line 4: invalid CID 'not-a-cid': ")
    assert str(caught.value).endswith("(nothing was provided)")
    with pytest.raises(ArgumentError) as caught:
        parse_cid_lines(body, first_line=101)
    assert str(caught.value).startswith("line 104: invalid CID")
    assert str(caught.value).endswith("(lines 1-100 were provided, nothing from line 101 on)")
    with pytest.raises(ArgumentError, match=r"^line 12: not UTF-8 text \(lines 1-9 were"):
        parse_cid_lines(cid(1) + b"\n" + cid(2) + b"\n\xff\n", first_line=10)


def test_every_line_is_decoded_to_its_multihash() -> None:
    v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    body = f"  {v0}  \r\n{cid(7).decode()}\n".encode()
    assert parse_cid_lines(body) == [
        bytes(CID.decode(v0).digest),
        bytes(CID.decode(cid(7).decode()).digest),
    ]
