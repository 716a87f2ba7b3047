"""``zikade provide``: many CIDs from a file or stdin, ``stat``, ``clear`` (real daemons on
127.0.0.1, the installed console script)."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from multiformats import CID, multihash

from .conftest import DaemonChild, Daemons, zikade

pytestmark = pytest.mark.timeout(240)


def cids(n: int, tag: str) -> list[str]:
    return [
        str(CID("base32", 1, "raw", multihash.digest(f"{tag}-{i}".encode(), "sha2-256")))
        for i in range(n)
    ]


def stat(repo: Path) -> dict[str, object]:
    result = zikade("provide", "stat", "--json", repo=repo).ok()
    doc = json.loads(result.out)
    assert isinstance(doc, dict)
    return doc


def wait_table(child: DaemonChild, *peers: DaemonChild, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``child``'s routing table holds every one of ``peers``."""
    deadline = time.monotonic() + timeout
    while True:
        out = zikade("routing-table", "--json", repo=child.repo).out
        if all(p.peer_id in out for p in peers):
            return
        assert time.monotonic() < deadline, f"routing table never held the peers: {out}"
        time.sleep(0.3)


def wait_settled(repo: Path, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        doc = stat(repo)
        if doc.get("burst_keys") == 0 and doc.get("active_regions") == 0:
            return doc
        assert time.monotonic() < deadline, f"the sweep did not settle: {doc}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonChild, ...]]:
    """A seed, a server and a provider daemon (sweep), joined."""
    d = Daemons(tmp_path_factory.mktemp("provide"))
    try:
        seed = d.start("seed")
        other = d.start("other", "--bootstrap", seed.swarm_addr)
        provider = d.start("provider", "--bootstrap", seed.swarm_addr)
        wait_table(provider, seed)
        wait_table(other, seed)
        yield seed, other, provider
    finally:
        d.stop_all()


def test_provide_from_file_and_stdin_then_others_find_it(
    trio: tuple[DaemonChild, ...], tmp_path: Path
) -> None:
    _seed, other, provider = trio
    listing = tmp_path / "cids.txt"
    mine = cids(150, "file")
    listing.write_text("# our content\n" + "\n".join(mine) + "\n\n")
    result = zikade("provide", "--from-file", str(listing), "--json", repo=provider.repo).ok()
    assert json.loads(result.out) == {"Keys": 150, "New": 150}
    more = cids(30, "stdin")
    result = zikade(
        "provide", "-", repo=provider.repo, stdin=("\n".join(more) + "\n").encode()
    ).ok()
    assert result.out == "", "provide prints nothing on success"
    doc = wait_settled(provider.repo)
    assert doc["strategy"] == "sweep" and doc["keys"] == 180 and doc["regions"] == 1
    for cid in (mine[0], mine[77], more[5]):
        found = zikade("find-providers", "-n", "1", cid, repo=other.repo).ok()
        assert found.lines == [provider.peer_id]


def test_provide_of_named_cids_still_announces_at_once(trio: tuple[DaemonChild, ...]) -> None:
    _, other, provider = trio
    cid = cids(1, "named")[0]
    result = zikade("provide", cid, repo=provider.repo).ok()
    assert result.out == ""
    found = zikade("find-providers", "-n", "1", cid, repo=other.repo).ok()
    assert found.lines == [provider.peer_id]
    assert zikade("provide", "once", cid, repo=provider.repo).ok().out == ""


def test_provide_stat_plain_output(trio: tuple[DaemonChild, ...]) -> None:
    provider = trio[2]
    zikade("provide", "--from-file", "-", repo=provider.repo,
           stdin="\n".join(cids(5, "plain")).encode()).ok()  # fmt: skip
    out = zikade("provide", "stat", repo=provider.repo).ok().lines
    labels = [line.split(":", 1)[0] for line in out]
    for label in ("Strategy", "Keys", "Regions", "Network size", "Cycle", "Last region",
                  "Next region", "This cycle", "Queues"):  # fmt: skip
        assert label in labels, out


def test_bad_cid_line_is_one_error(trio: tuple[DaemonChild, ...]) -> None:
    provider = trio[2]
    bad = zikade("provide", "-", repo=provider.repo, stdin=b"bafkqaaa\nnot-a-cid\n")
    bad.one_error("line 2")


def test_provide_clear_empties_the_schedule(daemons: Daemons) -> None:
    seed = daemons.start("seed")
    provider = daemons.start("p", "--bootstrap", seed.swarm_addr)
    wait_table(provider, seed)
    zikade("provide", "-", repo=provider.repo, stdin="\n".join(cids(40, "c")).encode()).ok()
    assert wait_settled(provider.repo)["keys"] == 40
    assert zikade("provide", "clear", repo=provider.repo).ok().lines == ["cleared 40 keys"]
    doc = stat(provider.repo)
    assert doc["keys"] == 0 and doc["regions"] == 0
    zikade("provide", "reprovide", repo=provider.repo).ok()
    doc = wait_settled(provider.repo)
    assert doc["regions_done_cycle"] == 0 and doc["keys"] == 0


def test_provide_many_needs_a_daemon(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    zikade("init", "--repo", str(repo), "--no-bootstrap").ok()
    result = zikade("provide", "-", repo=repo, stdin=cids(1, "x")[0].encode())
    result.one_error("needs a running daemon")
    assert zikade("provide", "stat", "--json", repo=repo).ok()


def test_a_daemon_killed_mid_cycle_keeps_keys_and_schedule(daemons: Daemons) -> None:
    seed = daemons.start("seed")
    provider = daemons.start("p", "--bootstrap", seed.swarm_addr, "--reprovide-interval", "600")
    wait_table(provider, seed)
    zikade("provide", "-", repo=provider.repo, stdin="\n".join(cids(60, "kill")).encode()).ok()
    before = wait_settled(provider.repo)
    assert before["keys"] == 60 and before["streams_total"] > 0
    time.sleep(1.0)  # the schedule write of the burst's region commits (group commit)
    provider.stop(signal.SIGKILL)
    again = daemons.start("p", "--bootstrap", seed.swarm_addr, "--reprovide-interval", "600")
    wait_table(again, seed)
    time.sleep(3.0)
    after = stat(again.repo)
    assert after["keys"] == 60, "keys were lost"
    assert after["regions"] == before["regions"]
    assert after["cycle_start"] == pytest.approx(before["cycle_start"], abs=1.0)
    assert after["next_region_at"] == pytest.approx(before["next_region_at"], abs=1.0)
    # Nothing was due: the restarted daemon announced nothing again (no burst either).
    assert after["streams_total"] == 0 and after["burst_keys"] == 0


def test_a_bad_line_after_the_first_request_names_what_was_provided(
    trio: tuple[DaemonChild, ...], tmp_path: Path
) -> None:
    """The list is sent in requests of CHUNK_LINES CIDs as it is read: those before the
    bad line's request are provided, nothing from there on."""
    from zikade_cli.provide_commands import CHUNK_LINES

    provider = trio[2]
    before = stat(provider.repo)["keys"]
    assert isinstance(before, int)
    listing = tmp_path / "long.txt"
    good = [
        "b" + base64.b32encode(b"\x01\x55\x12\x20" + hashlib.sha256(b"long-%d" % i).digest())
        .decode().rstrip("=").lower()
        for i in range(CHUNK_LINES + 10)
    ]  # fmt: skip
    listing.write_text("\n".join([*good, "bafybroken", *cids(3, "after")]) + "\n")
    bad = zikade("provide", "--from-file", str(listing), repo=provider.repo)
    bad.one_error(
        f"line {CHUNK_LINES + 11}: invalid CID 'bafybroken'",
        f"lines 1-{CHUNK_LINES} were provided, nothing from line {CHUNK_LINES + 1} on",
    )
    assert stat(provider.repo)["keys"] == before + CHUNK_LINES
