"""Root CIDs equal those of the pinned ``ipfs-unixfs-importer`` (npm) for the same bytes
and settings (issue 13, acceptance 1): the sizes of the issue (0 B, 1 B, one chunk, one
chunk + 1 B, 10 MiB, 50 MiB: over 174 chunks, so two levels), both profiles, and small
chunk/link settings that build deep trees with short last runs cheaply."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zikade_py.blocks import cid as cids
from zikade_py.unixfs.importer import (
    DEFAULT_PROFILE,
    HELIA_2025_PROFILE,
    PROFILES,
    Profile,
    import_chunks,
)

from .jsnode import INTEROP_DIR, node_modules_dir

pytestmark = pytest.mark.interop

KiB, MiB = 1024, 1024 * 1024
CHUNK = DEFAULT_PROFILE.chunk_size

CASES: list[tuple[str, int, Profile]] = [
    ("empty", 0, DEFAULT_PROFILE),
    ("one-byte", 1, DEFAULT_PROFILE),
    ("one-chunk", CHUNK, DEFAULT_PROFILE),
    ("chunk-plus-one", CHUNK + 1, DEFAULT_PROFILE),
    ("10MiB", 10 * MiB, DEFAULT_PROFILE),
    ("50MiB", 50 * MiB, DEFAULT_PROFILE),  # 200 chunks > 174 links: a second level
    ("exactly-174-chunks", 174 * 1024, Profile("c1k-174", 1024, 174)),
    ("175-chunks", 175 * 1024 + 7, Profile("c1k-174", 1024, 174)),
    ("deep-tree", 10_000, Profile("c10-4", 10, 4)),  # 1000 leaves, 5 levels, short runs
    ("deep-exact", 4**4 * 10, Profile("c10-4", 10, 4)),
    ("helia-empty", 0, HELIA_2025_PROFILE),
    ("helia-1MiB+1", MiB + 1, HELIA_2025_PROFILE),
    ("helia-50MiB", 50 * MiB, HELIA_2025_PROFILE),
]
"""The default and Helia profile cases run through ``zikade add`` too."""


def _file(tmp: Path, name: str, size: int) -> Path:
    path = tmp / name
    path.write_bytes(random.Random(size).randbytes(size))
    return path


def _ours(path: Path, profile: Profile) -> str:
    def chunks():  # type: ignore[no-untyped-def]
        with path.open("rb") as f:
            while chunk := f.read(profile.chunk_size):
                yield chunk

    last = None
    for block in import_chunks(chunks(), profile):
        last = block
    assert last is not None
    return cids.to_str(last.cid)


def _job(path: Path, profile: Profile) -> dict[str, object]:
    if profile in (DEFAULT_PROFILE, HELIA_2025_PROFILE):
        return {"file": str(path), "profile": profile.name}
    return {"file": str(path), "chunkSize": profile.chunk_size, "maxLinks": profile.max_links}


def test_root_cids_match_ipfs_unixfs_importer(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (node_modules_dir() / "ipfs-unixfs-importer").is_dir():
        pytest.skip("needs node and ipfs-unixfs-importer in tests/interop (npm ci)")
    files = [(name, _file(tmp_path, name, size), profile) for name, size, profile in CASES]
    jobs = [_job(path, profile) for _, path, profile in files]
    out = subprocess.run(
        ["node", str(INTEROP_DIR / "unixfs_import.mjs")], input=json.dumps(jobs),
        capture_output=True, text=True, cwd=INTEROP_DIR, timeout=240, check=True,
    )
    theirs = out.stdout.split()
    assert len(theirs) == len(files), out.stderr
    ours = [_ours(path, profile) for _, path, profile in files]
    mismatches = [
        (name, o, t) for (name, _, _), o, t in zip(files, ours, theirs, strict=True) if o != t
    ]
    assert not mismatches
    assert theirs[0] == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # empty raw
    # and the command users run gives the same CIDs (no daemon: the repo's blockstore)
    by_profile: dict[str, list[tuple[Path, str]]] = {}
    for (_, path, profile), cid in zip(files, theirs, strict=True):
        if profile.name in PROFILES:
            by_profile.setdefault(profile.name, []).append((path, cid))
    zikade = str(Path(sys.executable).parent / "zikade")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    repo = tmp_path / "repo"
    subprocess.run([zikade, "init", "--repo", str(repo), "--no-bootstrap"], env=env,
                   capture_output=True, check=True, timeout=60)
    for name, entries in by_profile.items():
        res = subprocess.run(
            [zikade, "add", "-q", "--profile", name, "--repo", str(repo),
             *(str(p) for p, _ in entries)],
            env=env, capture_output=True, text=True, timeout=240, check=True,
        )
        assert res.stdout.split() == [cid for _, cid in entries], name
