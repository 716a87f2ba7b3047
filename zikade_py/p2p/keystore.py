"""Our persistent identity: the key file in the repo directory.

A node must keep its peer id across restarts (other peers' routing tables and
records point at it), so the Ed25519 key lives in a file holding the libp2p
``PrivateKey`` protobuf, the same bytes go and js write. The file is created
with mode 0600 and appears atomically: a crash never leaves a half-written key,
and two processes starting at once end up with the same identity.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets

from zikade_py.p2p.crypto import PrivateKey


def load_or_create_identity(path: pathlib.Path) -> PrivateKey:
    """The identity stored at ``path``, creating a new one if the file does not exist.

    Raises :class:`~zikade_py.p2p.crypto.InvalidKeyError` for a file that exists
    but is not a valid Ed25519 key (it is never overwritten), and ``OSError``
    for filesystem problems.
    """
    try:
        return PrivateKey.from_protobuf(path.read_bytes())
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = PrivateKey.generate()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.to_protobuf())
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() fails if the name exists, so a concurrent creator's key wins
            # instead of being replaced after it was already in use.
            os.link(tmp, path)
        except FileExistsError:
            return PrivateKey.from_protobuf(path.read_bytes())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return key
