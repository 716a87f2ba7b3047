"""The libp2p TLS certificate: how a peer proves its identity inside a TLS 1.3 handshake.

libp2p/specs ``tls/tls.md``: the certificate is self-signed by an *ephemeral* key that
has nothing to do with the identity; the identity key travels in the X.509 extension
``1.3.6.1.4.1.53594.1.1`` as ``SignedKey ::= SEQUENCE { publicKey OCTET STRING,
signature OCTET STRING }``, where ``publicKey`` is the libp2p ``PublicKey`` protobuf and
``signature`` is the identity key's signature over ``"libp2p-tls-handshake:" ‖
SubjectPublicKeyInfo(certificate key)``. That binds the TLS key (which signs the
handshake transcript) to the peer id, for every identity key type, including those
X.509 knows nothing about (secp256k1 identities, Ed25519 where a TLS stack lacks it).

QUIC (``quic/``) uses this for both sides; :func:`verify_certificate_chain` is the one
check every received certificate goes through, and errors are
:class:`CertificateError` (the peer broke the protocol) so the handshake aborts.
"""

from __future__ import annotations

import datetime
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from zikade_py.p2p.crypto import InvalidKeyError, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import PeerID

EXTENSION_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
"""The libp2p Public Key Extension (IANA enterprise number 53594, allocated to libp2p)."""

SIGNATURE_PREFIX: Final = b"libp2p-tls-handshake:"
"""Domain separation for the identity key's signature over the certificate key."""

ALPN: Final = "libp2p"
"""The ALPN every libp2p TLS (and QUIC) handshake must agree on."""

MAX_CERTIFICATE_BYTES: Final = 16 * 1024
"""A libp2p certificate is under 1 KB even with an 8192-bit RSA identity; refuse more
before parsing (the parser's cost is the peer's choice otherwise)."""

CERT_VALIDITY: Final = datetime.timedelta(days=365 * 100)
"""How long our certificates are valid (go uses 100 years: the key is ephemeral anyway)."""
CERT_BACKDATE: Final = datetime.timedelta(hours=1)
"""NotBefore lies this far in the past so a peer whose clock is a little behind accepts it."""

_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_DER = serialization.Encoding.DER


class CertificateError(Exception):
    """The peer's certificate does not prove a libp2p identity (the handshake must abort)."""


class PeerIDMismatchError(CertificateError):
    """The certificate proves an identity, but not the one we dialled."""

    def __init__(self, expected: PeerID, actual: PeerID) -> None:
        super().__init__(f"dialled {expected} but the remote is {actual}")
        self.expected = expected
        self.actual = actual


# --- SignedKey DER ------------------------------------------------------------------------------


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _der_tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(body)) + body


def _der_read(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    """The body of the DER element of ``tag`` at ``pos`` and the position after it; strict:
    definite, minimal lengths only (DER), so one SignedKey has exactly one encoding."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise CertificateError(f"SignedKey: expected DER tag {tag:#04x}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or pos + count > len(data):
            raise CertificateError("SignedKey: bad DER length")
        raw = data[pos : pos + count]
        size = int.from_bytes(raw, "big")
        if raw[0] == 0 or size < 0x80:
            raise CertificateError("SignedKey: non-minimal DER length")
        pos += count
    if pos + size > len(data):
        raise CertificateError("SignedKey: DER element runs past its end")
    return data[pos : pos + size], pos + size


@dataclass(frozen=True, slots=True)
class SignedKey:
    """The extension's value: the identity key protobuf and its signature over our TLS key."""

    public_key: bytes
    signature: bytes

    def to_der(self) -> bytes:
        """``SEQUENCE { OCTET STRING, OCTET STRING }``."""
        body = _der_tlv(0x04, self.public_key) + _der_tlv(0x04, self.signature)
        return _der_tlv(0x30, body)

    @staticmethod
    def from_der(data: bytes) -> SignedKey:
        """Parse the extension value (CertificateError if it is not exactly a SignedKey)."""
        body, end = _der_read(data, 0, 0x30)
        if end != len(data):
            raise CertificateError("SignedKey: trailing bytes")
        public_key, pos = _der_read(body, 0, 0x04)
        signature, pos = _der_read(body, pos, 0x04)
        if pos != len(body):
            raise CertificateError("SignedKey: trailing bytes inside the sequence")
        return SignedKey(public_key, signature)


# --- our certificate ----------------------------------------------------------------------------


CertificateKey = ec.EllipticCurvePrivateKey
"""The ephemeral TLS key type we use: ECDSA P-256, which every libp2p TLS stack verifies
(go's default too) and whose signatures are small."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """Our certificate and its ephemeral private key, ready for a TLS stack."""

    certificate: x509.Certificate
    private_key: CertificateKey

    @property
    def der(self) -> bytes:
        """The DER encoding (what goes on the wire)."""
        return self.certificate.public_bytes(_DER)


def make_certificate_for(
    identity: PublicKey,
    sign: Callable[[bytes], bytes],
    *,
    now: datetime.datetime | None = None,
    critical: bool = False,
) -> Certificate:
    """A certificate proving ``identity``, whose key signs with ``sign``.

    Separate from :func:`make_certificate` so any identity key type can be proven (tests
    sign with RSA, secp256k1 and ECDSA identities; our own identity is always Ed25519).
    The extension is not marked critical by default (the spec allows either; a peer that
    rejects unknown critical extensions would refuse a critical one).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(_DER, _SPKI)
    signed = SignedKey(identity.to_protobuf(), sign(SIGNATURE_PREFIX + spki))
    now = now or datetime.datetime.now(datetime.UTC)
    # go and rust put a random serial in the subject; the name means nothing to a peer.
    serial = int.from_bytes(os.urandom(8), "big") >> 1 or 1
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - CERT_BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(
            x509.UnrecognizedExtension(EXTENSION_OID, signed.to_der()), critical=critical
        )
        .sign(key, hashes.SHA256())
    )
    return Certificate(cert, key)


def make_certificate(identity: PrivateKey, *, now: datetime.datetime | None = None) -> Certificate:
    """Our certificate: a fresh P-256 key, self-signed, carrying our identity's proof."""
    return make_certificate_for(identity.public_key, identity.sign, now=now)


# --- verifying a peer's certificate -------------------------------------------------------------


def _check_self_signature(cert: x509.Certificate) -> None:
    try:
        key = cert.public_key()
        algorithm = cert.signature_hash_algorithm
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"unusable certificate signature or key: {exc}") from None
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if algorithm is None:
                raise CertificateError("ECDSA certificate without a hash algorithm")
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, rsa.RSAPublicKey):
            padding = cert.signature_algorithm_parameters
            if algorithm is None or padding is None:
                raise CertificateError("RSA certificate without signature parameters")
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding, algorithm)  # type: ignore[arg-type]
        else:
            raise CertificateError(f"unsupported certificate key {type(key).__name__}")
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateError("the certificate's self-signature is invalid") from None


VERIFIED_CACHE_SIZE: Final = 512
"""Certificates whose checks passed, remembered by their exact bytes (most recent kept)."""


@dataclass(frozen=True, slots=True)
class _Verified:
    peer: PeerID
    key: PublicKey
    not_before: datetime.datetime
    not_after: datetime.datetime


# Peers keep one certificate per transport (we do too), so reconnecting to a peer brings
# the same bytes again: their parse, self-signature and identity signature (about a
# third of a millisecond per handshake side) need not be redone. Only what depends on
# the bytes alone is remembered; the validity window is checked again at every use, and
# the TLS handshake still proves the peer holds the certificate's key (CertificateVerify).
_verified: OrderedDict[bytes, _Verified] = OrderedDict()


def verify_certificate(
    der: bytes, *, now: datetime.datetime | None = None
) -> tuple[PeerID, PublicKey]:
    """The peer id and identity key a peer's certificate proves, or :class:`CertificateError`.

    Checks, as tls.md requires: it parses (and is small), it is valid now, its
    self-signature holds, no critical extension we do not understand, the libp2p
    extension is present exactly once, its identity key parses, and the identity's
    signature over the certificate's SubjectPublicKeyInfo verifies.
    """
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(f"certificate of {len(der)} bytes is too large")
    if (known := _verified.get(der)) is not None:
        _check_valid_now(known.not_before, known.not_after, now)
        _verified.move_to_end(der)
        return known.peer, known.key
    try:
        # cryptography parses fields lazily, and its errors are of several families
        # (ValueError, UnsupportedAlgorithm, InvalidVersion, ...): hostile bytes may raise
        # any of them anywhere, and every one of them means "refused"
        cert = x509.load_der_x509_certificate(der)
        peer, key = _verify(cert, now)
        verified = _Verified(peer, key, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except CertificateError:
        raise
    except Exception as exc:
        raise CertificateError(f"malformed certificate: {type(exc).__name__}: {exc}") from None
    _verified[der] = verified
    while len(_verified) > VERIFIED_CACHE_SIZE:
        _verified.popitem(last=False)
    return peer, key


def _check_valid_now(
    not_before: datetime.datetime, not_after: datetime.datetime, now: datetime.datetime | None
) -> None:
    now = now or datetime.datetime.now(datetime.UTC)
    if not not_before <= now <= not_after:
        raise CertificateError("the certificate is not valid now (expired or not yet valid)")


def _verify(cert: x509.Certificate, now: datetime.datetime | None) -> tuple[PeerID, PublicKey]:
    extensions = cert.extensions
    cert_key = cert.public_key()
    _check_valid_now(cert.not_valid_before_utc, cert.not_valid_after_utc, now)
    if cert.issuer != cert.subject:
        raise CertificateError("the certificate is not self-issued")
    _check_self_signature(cert)
    signed_der: bytes | None = None
    for ext in extensions:
        if ext.oid == EXTENSION_OID:
            if signed_der is not None:
                raise CertificateError("the libp2p extension appears twice")
            value = ext.value
            assert isinstance(value, x509.UnrecognizedExtension)
            signed_der = value.value
        elif ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise CertificateError(f"unknown critical extension {ext.oid.dotted_string}")
    if signed_der is None:
        raise CertificateError("the certificate lacks the libp2p public key extension")
    signed = SignedKey.from_der(signed_der)
    try:
        identity = PublicKey.from_protobuf(signed.public_key)
    except InvalidKeyError as exc:
        raise CertificateError(f"bad identity key in the extension: {exc}") from None
    spki = cert_key.public_bytes(_DER, _SPKI)
    if not identity.verify(SIGNATURE_PREFIX + spki, signed.signature):
        raise CertificateError("the identity's signature over the certificate key is invalid")
    return PeerID.from_public_key(identity), identity


def verify_certificate_chain(
    chain: Sequence[bytes],
    expected: PeerID | None = None,
    *,
    now: datetime.datetime | None = None,
) -> tuple[PeerID, PublicKey]:
    """:func:`verify_certificate` of a received chain, which must hold exactly one
    certificate; with ``expected`` the proven peer must be that one
    (:class:`PeerIDMismatchError`)."""
    if len(chain) != 1:
        raise CertificateError(f"expected exactly one certificate, got {len(chain)}")
    peer, key = verify_certificate(chain[0], now=now)
    if expected is not None and peer != expected:
        raise PeerIDMismatchError(expected, peer)
    return peer, key
