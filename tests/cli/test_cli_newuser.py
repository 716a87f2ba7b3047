"""What a new user following the README ran into: each test pins one fixed trip-up.

- ``zikade devnet`` used ``ZIKADE_PATH`` (which the devnet banner tells you to
  export) as node 0's repo and rewrote that repo's config;
- ``--demo`` printed "point other commands at it" for a devnet about to stop;
- bad-input errors repeated the input or showed a Python repr;
- ``put -v`` narrated the peers that stored a record as "got value from";
- the README's recipe for a ``/pk/`` record (``zikade id --json`` → ``put``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
SEED = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"


def test_devnet_leaves_the_zikade_path_repo_alone(zikade_run, tmp_path: Path) -> None:
    repo = tmp_path / "mine"
    zikade_run("init", "--bootstrap", SEED, repo=repo).ok()
    before = (repo / "config").read_text()

    res = zikade_run("devnet", "--demo", "-n", "3", repo=repo, timeout=120).ok()

    assert (repo / "config").read_text() == before
    assert not (repo / "api").exists()
    assert "demo ok" in res.out
    assert "export ZIKADE_PATH" not in res.out  # the devnet is gone when the demo ends
    assert "'zikade devnet' keeps one running" in res.out


def test_devnet_help_explains_every_option(zikade_run) -> None:
    out = " ".join(zikade_run("devnet", "--help").ok().out.split())  # undo click's wrapping
    assert "Number of nodes." in out
    assert "ZIKADE_PATH is not used" in out


@pytest.mark.parametrize(
    ("args", "expected", "absent"),
    [
        (
            ["find-providers", "notacid"],
            "invalid CID 'notacid': No known multibase code",
            "'No known",
        ),
        (  # a bare peer ID is a valid target now (issue 11); a broken one is not
            ["id", "notapeer"],
            "invalid peer ID 'notapeer'",
            "Traceback",
        ),
        (
            ["bootstrap", "add", PEER],
            f"invalid multiaddr '{PEER}': expected /ip4/<host>/tcp/<port>/p2p/<peer-id>",
            f"'/': '{PEER}'",
        ),
    ],
    ids=["cid-no-repr", "id-bad-peer", "bootstrap-bare-peer"],
)
def test_bad_input_messages_say_what_is_expected(
    zikade_run, repo: Path, args: list[str], expected: str, absent: str
) -> None:
    res = zikade_run(*args, repo=repo)
    line = res.one_error(expected)
    assert absent not in line


def test_pk_record_from_id_json_put_then_get(net, zikade_run) -> None:
    ident = json.loads(zikade_run("id", "--json", repo=net.a.repo).ok().out)
    public_key = base64.b64decode(ident["PublicKey"])
    key = f"/pk/{ident['ID']}"

    res = zikade_run("put", "-v", key, "-", repo=net.a.repo, stdin=public_key).ok()
    assert net.b.peer_id in res.lines
    assert f"stored at {net.b.peer_id}" in res.err
    assert "got value from" not in res.err

    got = zikade_run("get", key, repo=net.b.repo).ok()
    assert got.raw_out == public_key
