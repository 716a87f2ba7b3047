"""The few places where libp2p needs more of aioquic than its public API offers.

libp2p QUIC (libp2p/specs ``quic/README.md`` + ``tls/tls.md``) needs a server that
*requests* a client certificate, a custom check of the peer's certificate *during* the
handshake (the libp2p extension instead of a CA chain), and a client that waits for
handshake *confirmation* (a TLS 1.3 server rejects the client certificate after the
client believes the handshake is done). aioquic 1.x has none of these as options; its
``tls.Context`` has them as private attributes. We reach them here, and only here:

- ``Context._request_client_certificate`` (aioquic's own tests use it) makes the server
  send a CertificateRequest;
- ``Context._set_peer_certificate`` is wrapped so the libp2p check runs when the
  certificate arrives; a failure raises a TLS alert, so aioquic aborts the handshake
  with ``CRYPTO_ERROR + bad_certificate`` exactly as for any other certificate failure;
- ``Context._server_handle_finished`` is wrapped so a client that sent an empty
  Certificate is refused with ``certificate_required`` before the handshake completes;
- ``QuicConnection._replenish_connection_ids`` is wrapped to report each connection id
  we issue the moment it is made (``cid_issued``): aioquic announces it only as an
  event queued while the NEW_CONNECTION_ID frame is *sent*, after the driver drained
  its events, and a peer that moves to the new id at once (quinn does, when the
  handshake completes) had its HANDSHAKE_DONE dropped as unroutable until its PTO
  (~35 ms with our 25 ms max_ack_delay);
- ``QuicConnection._handshake_confirmed`` (HANDSHAKE_DONE received) and the stream
  sender's ``_buffer`` (bytes not yet acknowledged) are read;
- ``QuicConnection._close_event`` / ``_state`` tell that the peer closed (DRAINING):
  aioquic reports it only after the draining period (3 PTO, hundreds of ms), but the
  connection is over for us at once;
- ``Context._supported_groups`` is cut to X25519 and P-256 (what quinn/rustls and go
  offer first): aioquic's client otherwise makes four key shares (P-256, P-384, X25519,
  X448) per handshake, half of its key-exchange CPU for shares nobody picks;
- ``QuicConnection._write_stream_limits`` is overridden so a stream's receive window
  moves when the *application* reads (aioquic doubles it as data *arrives*, so a peer
  could fill our memory with a stream nobody reads): the grant is ``consumed + window``.

Why not a patch or a fork: the hooks are a dozen lines on attributes that have been
stable across aioquic 0.9 to 1.7, a fork would have to be kept in step with security
fixes, and an upstream option can replace this module when it lands. Why it is safe:
pyproject bounds aioquic below the next minor release, :func:`check_internals` runs
before the first QUIC connection is made and raises :class:`AioquicInternalsError`
naming what is missing, and ``tests/p2p/test_quic_hooks.py`` fails loudly on any
aioquic whose internals moved (the upper bound may only be raised with it green).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState

from zikade_py.p2p.crypto import PublicKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.tls import CertificateError, verify_certificate_chain

_CONTEXT_ATTRS: Final = ("_request_client_certificate", "_peer_certificate", "_supported_groups")
KEY_SHARE_GROUPS: Final = (tls.Group.X25519, tls.Group.SECP256R1)
"""The key exchange groups we offer and accept, in order of preference."""
_CONTEXT_METHODS: Final = ("_set_peer_certificate", "_server_handle_finished")
_CONNECTION_ATTRS: Final = (
    "_handshake_confirmed",
    "_host_cids",
    "_replenish_connection_ids",
    "_streams",
    "_write_stream_limits",
    "_close_event",
    "_state",
)
_STREAM_ATTRS: Final = ("max_stream_data_local", "max_stream_data_local_sent")


class AioquicInternalsError(RuntimeError):
    """The installed aioquic lacks an internal this module relies on (upgrade check failed)."""


class _CertificateRequiredAlert(tls.Alert):
    description = tls.AlertDescription.certificate_required


def check_internals() -> None:
    """Raise :class:`AioquicInternalsError` unless every internal we use is where we expect."""
    missing: list[str] = []
    ctx = tls.Context(is_client=False)
    missing += [f"tls.Context.{a}" for a in _CONTEXT_ATTRS if not hasattr(ctx, a)]
    missing += [f"tls.Context.{m}()" for m in _CONTEXT_METHODS if not callable(getattr(ctx, m, 0))]
    conn = QuicConnection(configuration=QuicConfiguration(is_client=True))
    missing += [f"QuicConnection.{a}" for a in _CONNECTION_ATTRS if not hasattr(conn, a)]
    if not callable(getattr(conn, "_initialize", None)):
        missing.append("QuicConnection._initialize()")
    conn.send_stream_data(0, b"")
    stream = conn._streams.get(0)
    if stream is None:
        missing.append("QuicConnection._streams[id]")
    else:
        missing += [f"QuicStream.{a}" for a in _STREAM_ATTRS if not hasattr(stream, a)]
        if not hasattr(stream.receiver, "highest_offset"):
            missing.append("QuicStreamReceiver.highest_offset")
        if not hasattr(stream.sender, "_buffer"):
            missing.append("QuicStreamSender._buffer")
    if missing:
        raise AioquicInternalsError(
            "aioquic internals needed for libp2p QUIC are missing: " + ", ".join(missing)
        )


class Libp2pQuicConnection(QuicConnection):
    """An aioquic connection whose TLS proves and checks libp2p identities.

    ``expected_peer`` (dialer side) makes any other identity a handshake failure. After
    a successful handshake :attr:`remote_peer` and :attr:`remote_public_key` are set;
    :attr:`certificate_error` says why a handshake we aborted failed.
    """

    def __init__(
        self, *, expected_peer: PeerID | None = None, stream_window: int = 1 << 20, **kwargs: Any
    ) -> None:
        self.expected_peer = expected_peer
        self.stream_window = stream_window
        """Bytes a peer may send on a stream beyond what the application has read."""
        self.consumed: dict[int, int] = {}
        """Bytes the application has read, per stream (the session keeps it up to date)."""
        self.remote_peer: PeerID | None = None
        self.remote_public_key: PublicKey | None = None
        self.certificate_error: CertificateError | None = None
        self.cid_issued: Callable[[bytes], None] | None = None
        """Called with each connection id we issue, when it is made (before it is sent)."""
        super().__init__(**kwargs)

    def _replenish_connection_ids(self) -> None:
        known = len(self._host_cids)
        super()._replenish_connection_ids()
        if self.cid_issued is not None:
            for connection_id in self._host_cids[known:]:  # appended at the end
                self.cid_issued(connection_id.cid)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        _install(self)

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        consumed = self.consumed.get(stream.stream_id, 0)
        if stream.max_stream_data_local:
            target = consumed + self.stream_window
            # grant more once half the window was read (not one frame per read)
            if target - stream.max_stream_data_local >= self.stream_window // 2:
                stream.max_stream_data_local = target
        # hide the arrival offset from aioquic's arrival-driven doubling, then let it write
        # the MAX_STREAM_DATA frame for whatever we decided
        arrived = stream.receiver.highest_offset
        stream.receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            stream.receiver.highest_offset = arrived

    def _accept_chain(self, chain: list[bytes]) -> None:
        try:
            peer, key = verify_certificate_chain(chain, self.expected_peer)
        except CertificateError as exc:
            self.certificate_error = exc
            raise tls.AlertBadCertificate(str(exc)) from None
        except Exception as exc:  # a parser surprise must still end in a TLS alert
            self.certificate_error = CertificateError(f"unreadable certificate: {exc!r}")
            raise tls.AlertBadCertificate(str(self.certificate_error)) from None
        self.remote_peer, self.remote_public_key = peer, key


def _install(conn: Libp2pQuicConnection) -> None:
    ctx = conn.tls
    original_set: Callable[[tls.Certificate], None] = ctx._set_peer_certificate

    @functools.wraps(original_set)
    def set_peer_certificate(certificate: tls.Certificate) -> None:
        original_set(certificate)  # an unparsable certificate raises bad_certificate here
        conn._accept_chain([der for der, _ in certificate.certificates])

    ctx._set_peer_certificate = set_peer_certificate  # type: ignore[method-assign]
    ctx._supported_groups = list(KEY_SHARE_GROUPS)
    if conn.configuration.is_client:
        return
    ctx._request_client_certificate = True
    original_finished: Callable[[Buffer, Buffer], None] = ctx._server_handle_finished

    @functools.wraps(original_finished)
    def server_handle_finished(input_buf: Buffer, output_buf: Buffer) -> None:
        if conn.remote_peer is None:
            conn.certificate_error = CertificateError("the client sent no certificate")
            raise _CertificateRequiredAlert("the client sent no certificate")
        original_finished(input_buf, output_buf)

    ctx._server_handle_finished = server_handle_finished  # type: ignore[method-assign]


def handshake_confirmed(conn: QuicConnection) -> bool:
    """Whether the handshake is confirmed (client: HANDSHAKE_DONE received, i.e. the server
    accepted our certificate; server: the handshake completed)."""
    return bool(conn._handshake_confirmed)


def send_buffered(conn: QuicConnection, stream_id: int) -> int:
    """Bytes of ``stream_id`` that aioquic holds (unsent or unacknowledged): what write
    backpressure waits on, since ``send_stream_data`` itself never refuses data."""
    stream = conn._streams.get(stream_id)
    if stream is None:
        return 0
    return len(stream.sender._buffer)


def peer_closed(conn: QuicConnection) -> events.ConnectionTerminated | None:
    """The peer's CONNECTION_CLOSE once it arrived (the connection is draining), else None."""
    if conn._state is QuicConnectionState.DRAINING:
        return conn._close_event
    return None
