"""The repo directory as the CLI and the daemon share it (``~/.zikade``, Kubo's ``$IPFS_PATH``).

Layout: ``identity.key`` (the node key, written by the Node / keystore),
``datastore.sqlite`` (the Node's persistent table and records), ``config``
(JSON, Kubo-like: ``Identity``, ``Addresses``, ``Bootstrap``, ``Routing``, ``DNS``) and,
while a daemon runs, ``api`` holding the RPC API's multiaddr (Kubo's
``repo/fsrepo`` ``apiFile``) so other invocations find it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zikade_py.p2p.bootstrap_peers import DEFAULT_BOOTSTRAP_PEERS

DEFAULT_STORAGE_MAX = "10GB"
"""Kubo's ``Datastore.StorageMax`` (the same as ``zikade_py.blocks.limits``)."""
DEFAULT_GC_WATERMARK = 90
"""Kubo's ``Datastore.StorageGCWatermark``."""

if TYPE_CHECKING:  # the p2p stack is imported where it is used: the command line reads the
    # repo (is there one? is a daemon's API file there?) before it knows it needs any of it
    from zikade_py.blocks.limits import StorageLimits
    from zikade_py.p2p.multiaddr import Multiaddr
    from zikade_py.p2p.peer_id import PeerID

DEFAULT_REPO = "~/.zikade"
"""Where the repo lives unless ``--repo`` / ``ZIKADE_PATH`` say otherwise."""

IDENTITY_FILE = "identity.key"
CONFIG_FILE = "config"
API_FILE = "api"

DEFAULT_SWARM = ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1")
"""Kubo's default swarm port, over TCP and QUIC (Kubo listens on both too); tests and the
devnet always pass 127.0.0.1 addresses."""

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
"""Kubo's default RPC API address (loopback only: the API is unauthenticated)."""

DEFAULT_BOOTSTRAP = DEFAULT_BOOTSTRAP_PEERS
"""What ``zikade init`` writes and ``bootstrap reset`` restores: Kubo's public list."""


class RepoError(Exception):
    """The repo cannot be read or written (bad config file, unreadable key, …)."""


@dataclass(slots=True)
class RepoConfig:
    """The ``config`` file: what ``zikade daemon`` starts with when no flag overrides it."""

    peer_id: str = ""
    swarm: list[str] = field(default_factory=lambda: list(DEFAULT_SWARM))
    api: str = DEFAULT_API
    bootstrap: list[str] = field(default_factory=lambda: list(DEFAULT_BOOTSTRAP))
    """``Bootstrap``: the public peers unless the user chose others (``[]``: none)."""
    mode: str = "auto"
    """``Routing.Mode``: ``auto`` (a client until AutoNAT finds us reachable), ``server``
    or ``client``."""
    dns_resolvers: dict[str, str] = field(default_factory=dict)
    """``DNS.Resolvers`` (Kubo): domain suffix (``"."``: all) → ``<ip>[:<port>]`` of the
    DNS server to ask; empty: the system's. ``ZIKADE_DNS_RESOLVER`` overrides it."""
    storage_max: str = DEFAULT_STORAGE_MAX
    """``Datastore.StorageMax`` (Kubo): the blockstore's cap, e.g. ``10GB``, ``512MiB``."""
    storage_gc_watermark: int = DEFAULT_GC_WATERMARK
    """``Datastore.StorageGCWatermark``: percent of the cap past which unpinned blocks
    are collected (zikade_py/blocks/limits.py)."""

    def storage_limits(self) -> StorageLimits:
        """The blockstore limits this config asks for (raises ``ValueError`` when malformed)."""
        from zikade_py.blocks.limits import StorageLimits, parse_size  # not at CLI start-up

        return StorageLimits(
            max_bytes=parse_size(self.storage_max), gc_watermark=self.storage_gc_watermark
        )

    def to_json(self) -> dict[str, Any]:
        """The Kubo-shaped JSON document."""
        return {
            "Identity": {"PeerID": self.peer_id},
            "Addresses": {"Swarm": list(self.swarm), "API": self.api},
            "Bootstrap": list(self.bootstrap),
            "Routing": {"Mode": self.mode},
            "DNS": {"Resolvers": dict(self.dns_resolvers)},
            "Datastore": {
                "StorageMax": self.storage_max,
                "StorageGCWatermark": self.storage_gc_watermark,
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> RepoConfig:
        """Parse the JSON document; raises :class:`RepoError` for a malformed one."""
        if not isinstance(doc, dict):
            raise RepoError("config is not a JSON object")
        try:
            addresses = doc.get("Addresses") or {}
            datastore = doc.get("Datastore") or {}
            cfg = cls(
                peer_id=str((doc.get("Identity") or {}).get("PeerID", "")),
                swarm=[str(a) for a in addresses.get("Swarm", DEFAULT_SWARM)],
                api=str(addresses.get("API", DEFAULT_API)),
                bootstrap=[str(a) for a in doc.get("Bootstrap") or []],
                mode=str((doc.get("Routing") or {}).get("Mode", "auto")),
                dns_resolvers={
                    str(k): str(v)
                    for k, v in ((doc.get("DNS") or {}).get("Resolvers") or {}).items()
                },
                storage_max=str(datastore.get("StorageMax", DEFAULT_STORAGE_MAX)),
                storage_gc_watermark=int(
                    datastore.get("StorageGCWatermark", DEFAULT_GC_WATERMARK)
                ),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise RepoError(f"malformed config: {exc}") from None
        return cfg


def repo_path(text: str | os.PathLike[str]) -> Path:
    """The repo directory for ``--repo`` text (``~`` expanded)."""
    return Path(os.path.expanduser(os.fspath(text)))


def is_initialized(repo: Path) -> bool:
    """Whether ``zikade init`` ran here (a config file exists)."""
    return (repo / CONFIG_FILE).is_file()


def require_initialized(repo: Path) -> None:
    """Raise :class:`RepoError` unless ``zikade init`` ran in ``repo``."""
    if not is_initialized(repo):
        raise RepoError(f"no zikade repo found in {repo} (run 'zikade init')")


def load_identity_peer(repo: Path) -> PeerID:
    """The repo's peer id, creating the key on first use."""
    from zikade_py.p2p.crypto import InvalidKeyError
    from zikade_py.p2p.keystore import load_or_create_identity
    from zikade_py.p2p.peer_id import PeerID

    try:
        key = load_or_create_identity(repo / IDENTITY_FILE)
    except (OSError, InvalidKeyError) as exc:
        raise RepoError(f"cannot load the identity in {repo / IDENTITY_FILE}: {exc}") from None
    return PeerID.from_public_key(key.public_key)


def init_repo(repo: Path, *, bootstrap: list[str] | None = None) -> tuple[RepoConfig, bool]:
    """Create the repo (key + config). Returns ``(config, created)``; existing repos are kept.

    ``bootstrap=None`` writes the default public list; ``[]`` an empty one."""
    if is_initialized(repo):
        return load_config(repo), False
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepoError(f"cannot create {repo}: {exc}") from None
    peer = load_identity_peer(repo)
    peers = list(DEFAULT_BOOTSTRAP if bootstrap is None else bootstrap)
    cfg = RepoConfig(peer_id=str(peer), bootstrap=peers)
    save_config(repo, cfg)
    return cfg, True


def load_config(repo: Path) -> RepoConfig:
    """The repo's config; defaults when the repo has none."""
    path = repo / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RepoConfig()
    except OSError as exc:
        raise RepoError(f"cannot read {path}: {exc}") from None
    try:
        return RepoConfig.from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise RepoError(f"{path} is not valid JSON: {exc}") from None


def save_config(repo: Path, cfg: RepoConfig) -> None:
    """Write the config atomically (a crash never leaves half a file)."""
    path = repo / CONFIG_FILE
    tmp = path.with_name(CONFIG_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise RepoError(f"cannot write {path}: {exc}") from None


def validate_bootstrap_addr(text: str) -> Multiaddr:
    """A bootstrap entry: a multiaddr ending in ``/p2p/<peer id>``, or a bare
    ``/dnsaddr/<name>`` (it stands for every peer its TXT records name).

    Raises :class:`~zikade_py.http.errors.ArgumentError` (a ``ValueError``) saying
    what is wrong without repeating more than the input once."""
    from zikade_py.http.args import parse_multiaddr

    return parse_multiaddr(text, need_peer=not text.strip().startswith("/dnsaddr/"))


def bootstrap_add(repo: Path, addrs: list[str]) -> list[str]:
    """Add validated entries to the repo's bootstrap list; returns the ones newly added."""
    for a in addrs:
        validate_bootstrap_addr(a)
    require_initialized(repo)
    cfg = load_config(repo)
    added = [a for a in dict.fromkeys(addrs) if a not in cfg.bootstrap]
    cfg.bootstrap.extend(added)
    save_config(repo, cfg)
    return added


def bootstrap_rm(repo: Path, addrs: list[str], *, remove_all: bool = False) -> list[str]:
    """Remove entries (or all of them); returns the ones removed."""
    require_initialized(repo)
    cfg = load_config(repo)
    if remove_all:
        removed, cfg.bootstrap = cfg.bootstrap, []
    else:
        for a in addrs:
            validate_bootstrap_addr(a)
        removed = [a for a in cfg.bootstrap if a in addrs]
        cfg.bootstrap = [a for a in cfg.bootstrap if a not in addrs]
    if removed:
        save_config(repo, cfg)
    return removed


def bootstrap_reset(repo: Path) -> list[str]:
    """Replace the list with the default public one (Kubo's ``bootstrap add --default`` after
    ``rm --all``); returns the new list."""
    require_initialized(repo)
    cfg = load_config(repo)
    cfg.bootstrap = list(DEFAULT_BOOTSTRAP)
    save_config(repo, cfg)
    return cfg.bootstrap


def read_api_file(repo: Path) -> str | None:
    """The API multiaddr a running daemon wrote, or None."""
    try:
        text = (repo / API_FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def write_api_file(repo: Path, addr: str) -> None:
    """Announce the daemon's API address to other invocations."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / API_FILE).write_text(addr + "\n")


def remove_api_file(repo: Path, addr: str | None = None) -> None:
    """Remove the API file (only if it still names ``addr``, when given)."""
    if addr is not None and read_api_file(repo) != addr:
        return
    with contextlib.suppress(FileNotFoundError):
        (repo / API_FILE).unlink()
