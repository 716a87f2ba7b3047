"""Provider, value and peer stores: every behaviour with an explicit ``now``, on both backends."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores import (
    MAX_RECORD_AGE,
    PROVIDER_ADDR_TTL,
    PROVIDER_VALIDITY,
    REPUBLISH_INTERVAL,
    MemoryPeerStore,
    MemoryProviderStore,
    MemoryValueStore,
    PeerStore,
    ProviderStore,
    ValueStore,
)
from zikade_py.dht.stores.base import StoreError
from zikade_py.dht.stores.sqlite import DATASTORE_FILENAME, SCHEMA_VERSION, SqliteDatastore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

T0 = 1_700_000_000.0
HOUR = 3600.0
KEY = bytes.fromhex("1220") + bytes(range(32))
KEY2 = bytes.fromhex("1220") + bytes(32)


def peer(n: int) -> PeerID:
    return PeerID.from_public_key(PrivateKey.from_seed(bytes([n]) * 32).public_key)


def addr(port: int) -> Multiaddr:
    return Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}")


A, B, C = peer(1), peer(2), peer(3)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def datastore(tmp_path: Path) -> Iterator[SqliteDatastore]:
    with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
        yield ds


@pytest.fixture
def providers(backend: str, tmp_path: Path) -> Iterator[ProviderStore]:
    if backend == "memory":
        yield MemoryProviderStore()
    else:
        with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
            yield ds.providers


@pytest.fixture
def values(backend: str, tmp_path: Path) -> Iterator[ValueStore]:
    if backend == "memory":
        yield MemoryValueStore()
    else:
        with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
            yield ds.values


@pytest.fixture
def peers(backend: str, tmp_path: Path) -> Iterator[PeerStore]:
    if backend == "memory":
        yield MemoryPeerStore()
    else:
        with SqliteDatastore(tmp_path / DATASTORE_FILENAME) as ds:
            yield ds.peers


# ------------------------------------------------------------------------------------ providers


def test_provider_add_get_and_isolation_by_key(providers: ProviderStore) -> None:
    providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
    providers.add(KEY, PeerInfo(B, (addr(2), addr(3))), T0 + 1)
    providers.add(KEY2, PeerInfo(C, (addr(4),)), T0)
    assert providers.get(KEY, T0 + 2) == [PeerInfo(B, (addr(2), addr(3))), PeerInfo(A, (addr(1),))]
    assert providers.get(KEY2, T0 + 2) == [PeerInfo(C, (addr(4),))]
    assert providers.get(b"\x12\x20" + b"\xff" * 32, T0) == []
    assert providers.get(KEY, T0 + 2, limit=1) == [PeerInfo(B, (addr(2), addr(3)))]


def test_provider_expires_after_48h(providers: ProviderStore) -> None:
    assert PROVIDER_VALIDITY == 48 * HOUR
    providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
    assert [p.peer_id for p in providers.get(KEY, T0 + PROVIDER_VALIDITY)] == [A]
    assert providers.get(KEY, T0 + PROVIDER_VALIDITY + 1) == []


def test_provider_addresses_dropped_after_24h_but_record_kept(providers: ProviderStore) -> None:
    assert PROVIDER_ADDR_TTL == 24 * HOUR
    providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
    assert providers.get(KEY, T0 + PROVIDER_ADDR_TTL) == [PeerInfo(A, (addr(1),))]
    assert providers.get(KEY, T0 + PROVIDER_ADDR_TTL + 1) == [PeerInfo(A, ())]


def test_provider_refresh_and_addressless_refresh_keeps_addrs(providers: ProviderStore) -> None:
    providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
    providers.add(KEY, PeerInfo(A, ()), T0 + 40 * HOUR)  # e.g. our own Provide without addrs
    # the record is refreshed, the addresses are those of T0 and expire on their own clock
    assert providers.get(KEY, T0 + 47 * HOUR) == [PeerInfo(A, ())]
    assert providers.get(KEY, T0 + 80 * HOUR) == [PeerInfo(A, ())]
    assert providers.get(KEY, T0 + 89 * HOUR) == []
    providers.add(KEY, PeerInfo(A, (addr(9),)), T0 + 89 * HOUR)
    assert providers.get(KEY, T0 + 90 * HOUR) == [PeerInfo(A, (addr(9),))]


def test_provider_without_addrs_first_time(providers: ProviderStore) -> None:
    providers.add(KEY, PeerInfo(A, ()), T0)
    assert providers.get(KEY, T0) == [PeerInfo(A, ())]


def test_provider_gc(providers: ProviderStore) -> None:
    providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
    providers.add(KEY, PeerInfo(B, (addr(2),)), T0 + 10 * HOUR)
    providers.add(KEY2, PeerInfo(C, (addr(3),)), T0 + 20 * HOUR)
    assert providers.gc(T0 + PROVIDER_VALIDITY) == 0
    assert providers.gc(T0 + PROVIDER_VALIDITY + 11 * HOUR) == 2
    assert providers.get(KEY, T0 + 1) == []  # really deleted, not just hidden
    assert [p.peer_id for p in providers.get(KEY2, T0 + 21 * HOUR)] == [C]
    assert providers.gc(T0 + 1000 * HOUR) == 1


def test_local_provides_due_for_republish(providers: ProviderStore) -> None:
    assert REPUBLISH_INTERVAL == 22 * HOUR
    providers.add_local(KEY, T0)
    providers.add_local(KEY2, T0 + HOUR)
    assert providers.list_local() == sorted([KEY, KEY2])
    assert providers.list_local_due(T0 + 21 * HOUR) == []
    assert providers.list_local_due(T0 + 22 * HOUR) == [KEY]
    assert providers.list_local_due(T0 + 23 * HOUR) == [KEY, KEY2]
    assert providers.list_local_due(T0 + 2 * HOUR, republish_interval=HOUR) == [KEY, KEY2]
    providers.add_local(KEY, T0 + 22 * HOUR)  # republished
    assert providers.list_local_due(T0 + 23 * HOUR) == [KEY2]
    # local keys are not provider records and never expire through gc
    assert providers.gc(T0 + 1000 * HOUR) == 0
    assert providers.remove_local(KEY2) is True
    assert providers.remove_local(KEY2) is False
    assert providers.list_local() == [KEY]


# --------------------------------------------------------------------------------------- values


def test_value_put_get_replace(values: ValueStore) -> None:
    assert values.get(b"/pk/a", T0) is None
    assert values.put(b"/pk/a", b"v1", T0) is True
    assert values.get(b"/pk/a", T0 + 1) == (b"v1", T0)
    assert values.put(b"/pk/a", b"v1", T0 + 5) is False  # same bytes: only refreshed
    assert values.get(b"/pk/a", T0 + 6) == (b"v1", T0 + 5)
    assert values.put(b"/pk/a", b"v2", T0 + 7) is True
    assert values.get(b"/pk/a", T0 + 8) == (b"v2", T0 + 7)
    assert values.get(b"/pk/b", T0 + 8) is None


def test_value_expires_after_48h(values: ValueStore) -> None:
    assert MAX_RECORD_AGE == 48 * HOUR
    values.put(b"/ipns/x", b"v", T0)
    assert values.get(b"/ipns/x", T0 + MAX_RECORD_AGE) == (b"v", T0)
    assert values.get(b"/ipns/x", T0 + MAX_RECORD_AGE + 1) is None
    assert values.get(b"/ipns/x", T0 + 2 * HOUR, max_age=HOUR) is None


def test_value_delete_and_gc(values: ValueStore) -> None:
    values.put(b"/pk/a", b"a", T0)
    values.put(b"/pk/b", b"b", T0 + 10 * HOUR)
    assert values.delete(b"/pk/a") is True
    assert values.delete(b"/pk/a") is False
    values.put(b"/pk/a", b"a", T0)
    assert values.gc(T0 + MAX_RECORD_AGE) == 0
    assert values.gc(T0 + MAX_RECORD_AGE + 1) == 1
    assert values.get(b"/pk/a", T0) is None  # deleted, not just hidden
    assert values.get(b"/pk/b", T0 + 11 * HOUR) == (b"b", T0 + 10 * HOUR)


def test_values_are_binary_safe(values: ValueStore) -> None:
    key = b"/ipns/" + bytes(range(256))
    value = bytes(range(256)) * 10
    values.put(key, value, T0)
    assert values.get(key, T0) == (value, T0)


# ---------------------------------------------------------------------------------------- peers


def test_peer_addrs_expire_per_address(peers: PeerStore) -> None:
    peers.add_addrs(A, [addr(1), addr(2)], ttl=10.0, now=T0)
    peers.add_addrs(A, [addr(2)], ttl=100.0, now=T0)
    peers.add_addrs(A, [addr(2)], ttl=1.0, now=T0)  # a shorter TTL never shortens
    assert peers.addrs(A, T0) == [addr(2), addr(1)]
    assert peers.addrs(A, T0 + 10) == [addr(2)]
    assert peers.addrs(A, T0 + 100) == []
    assert peers.addrs(B, T0) == []


def test_peer_list_remove_gc(peers: PeerStore) -> None:
    peers.add_addrs(A, [addr(1)], ttl=10.0, now=T0)
    peers.add_addrs(B, [addr(2), addr(3)], ttl=math.inf, now=T0)
    peers.add_addrs(C, [], ttl=10.0, now=T0)
    assert set(peers.peers()) == {A, B}
    assert peers.peers(T0 + 20) == [B]
    assert peers.gc(T0 + 20) == 1
    assert peers.peers() == [B]
    assert peers.addrs(B, T0 + 1e12) == sorted([addr(2), addr(3)], key=lambda a: a.to_bytes())
    assert peers.remove(B) is True
    assert peers.remove(B) is False
    assert peers.peers() == []


# --------------------------------------------------------------------------------------- sqlite


def test_sqlite_file_settings(datastore: SqliteDatastore) -> None:
    conn = sqlite3.connect(datastore.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert datastore.schema_version == SCHEMA_VERSION
    # FULL (2): a commit is fsynced before put/add return, so acknowledged means on disk.
    assert datastore._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    with SqliteDatastore(path) as ds:
        ds.providers.add(KEY, PeerInfo(A, (addr(1),)), T0)
        ds.providers.add_local(KEY2, T0)
        ds.values.put(b"/pk/a", b"value", T0)
        ds.peers.add_addrs(B, [addr(2)], ttl=HOUR, now=T0)
    with SqliteDatastore(path) as ds:
        assert ds.providers.get(KEY, T0 + 1) == [PeerInfo(A, (addr(1),))]
        assert ds.providers.list_local() == [KEY2]
        assert ds.values.get(b"/pk/a", T0 + 1) == (b"value", T0)
        assert ds.peers.addrs(B, T0 + 1) == [addr(2)]
        assert ds.peers.peers() == [B]


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    SqliteDatastore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        SqliteDatastore(path)


def test_sqlite_refuses_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        SqliteDatastore(path)


def test_sqlite_keys_are_parameters_not_sql(datastore: SqliteDatastore) -> None:
    evil = b"/pk/'); DROP TABLE records; --"
    datastore.values.put(evil, b"x", T0)
    assert datastore.values.get(evil, T0) == (b"x", T0)
    datastore.values.put(b"/pk/ok", b"y", T0)
    assert datastore.values.get(b"/pk/ok", T0) == (b"y", T0)


_WRITER = """
import sys
from zikade_py.dht.messages import PeerInfo
from zikade_py.dht.stores.sqlite import SqliteDatastore
from zikade_py.p2p.crypto import PrivateKey
from zikade_py.p2p.multiaddr import Multiaddr
from zikade_py.p2p.peer_id import PeerID

ds = SqliteDatastore(sys.argv[1])
pid = PeerID.from_public_key(PrivateKey.from_seed(bytes(32)).public_key)
ma = Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
for i in range(1_000_000):
    ds.values.put(b"/pk/%d" % i, b"value-%d" % i, 1_700_000_000.0)
    ds.providers.add(b"\\x12\\x20" + i.to_bytes(32, "big"), PeerInfo(pid, (ma,)), 1_700_000_000.0)
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
"""


def test_sqlite_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / DATASTORE_FILENAME
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 60
    try:
        # read acknowledgements until a few dozen records are on disk, then kill mid-stream
        while acked < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # anything already printed but not yet read was acknowledged too
    for line in proc.stdout.read().splitlines():
        acked = int(line)
    proc.stdout.close()
    assert acked >= 40, "the writer did not get going"
    assert proc.returncode == -signal.SIGKILL
    with SqliteDatastore(path) as ds:
        for i in range(acked + 1):
            assert ds.values.get(b"/pk/%d" % i, 1_700_000_000.0) == (
                b"value-%d" % i,
                1_700_000_000.0,
            )
            key = b"\x12\x20" + i.to_bytes(32, "big")
            assert len(ds.providers.get(key, 1_700_000_000.0)) == 1
