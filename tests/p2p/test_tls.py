"""The libp2p TLS certificate (tls/tls.md): spec vectors, round trips for every identity key
type, and every way a certificate must be refused."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from zikade_py.p2p.crypto import KeyType, PrivateKey, PublicKey
from zikade_py.p2p.peer_id import PeerID
from zikade_py.p2p.tls import (
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    CertificateError,
    PeerIDMismatchError,
    SignedKey,
    make_certificate,
    make_certificate_for,
    verify_certificate,
    verify_certificate_chain,
)

# libp2p/specs tls/tls.md "Test vectors" (hex as published)

ED25519_CERT = bytes.fromhex(
    "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a1309"
    "6c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936"
    "303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301"
    "313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132"
    "721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37"
    "e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c"
    "4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cf"
    "b8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a"
    "06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc60"
    "71ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77"
)
ECDSA_CERT = bytes.fromhex(
    "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a1309"
    "6c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936"
    "303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301"
    "313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132"
    "721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37"
    "e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a"
    "8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c97315"
    "5de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045"
    "0220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5"
    "f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220"
    "799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c77"
    "9be86581d3e31c01871ad5d1f3435bcf375cb0e5088a"
)
SECP256K1_CERT = bytes.fromhex(
    "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a1309"
    "6c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936"
    "303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301"
    "313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132"
    "721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37"
    "e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820"
    "f050263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95e"
    "c93f6ffa03c5a385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666"
    "d1bcec2a4690dd300a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b7084964"
    "6b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6"
    "b5d46899cef0"
)
MISMATCH_CERT = bytes.fromhex(
    "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a1309"
    "6c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936"
    "303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301"
    "313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132"
    "721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37"
    "e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a"
    "8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c97315"
    "5de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045"
    "022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6"
    "202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d04030203480030450221"
    "00e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57"
    "a7e8b3989e470325de4406e52e084e34a3fd56eef0d0df"
)
ED25519_PEER = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
ECDSA_PEER = "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE"
SECP256K1_PEER = "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs"

DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


# --- spec vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert", "peer", "key_type"),
    [
        (ED25519_CERT, ED25519_PEER, KeyType.ED25519),
        (ECDSA_CERT, ECDSA_PEER, KeyType.ECDSA),
        (SECP256K1_CERT, SECP256K1_PEER, KeyType.SECP256K1),
    ],
)
def test_spec_vectors_prove_their_peer_ids(cert: bytes, peer: str, key_type: KeyType) -> None:
    proven, key = verify_certificate(cert)
    assert str(proven) == peer
    assert key.key_type is key_type
    assert verify_certificate_chain([cert], PeerID.from_string(peer))[0] == proven


def test_spec_vector_with_a_foreign_signature_is_refused() -> None:
    with pytest.raises(CertificateError, match="signature over the certificate key"):
        verify_certificate(MISMATCH_CERT)


# --- round trips for every identity key type ----------------------------------------------------


def _signer_for(kind: str) -> tuple[PublicKey, object]:
    if kind == "ed25519":
        own = PrivateKey.generate()
        return own.public_key, own.sign
    if kind == "secp256k1":
        k = ec.generate_private_key(ec.SECP256K1())
        data = k.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return PublicKey(KeyType.SECP256K1, data), lambda m: k.sign(m, ec.ECDSA(hashes.SHA256()))
    if kind == "ecdsa":
        e = ec.generate_private_key(ec.SECP256R1())
        pub = PublicKey(KeyType.ECDSA, e.public_key().public_bytes(DER, SPKI))
        return pub, lambda m: e.sign(m, ec.ECDSA(hashes.SHA256()))
    r = rsa.generate_private_key(65537, 2048)
    pub = PublicKey(KeyType.RSA, r.public_key().public_bytes(DER, SPKI))
    return pub, lambda m: r.sign(m, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1", "ecdsa", "rsa"])
def test_round_trip_for_every_identity_key_type(kind: str) -> None:
    identity, sign = _signer_for(kind)
    cert = make_certificate_for(identity, sign)  # type: ignore[arg-type]
    peer, key = verify_certificate_chain([cert.der], PeerID.from_public_key(identity))
    assert key == identity
    assert peer == PeerID.from_public_key(identity)


def test_our_certificate_is_self_signed_p256_with_a_fresh_key_each_time() -> None:
    me = PrivateKey.generate()
    a, b = make_certificate(me), make_certificate(me)
    assert isinstance(a.private_key.curve, ec.SECP256R1)
    assert a.der != b.der
    assert a.certificate.public_key() != b.certificate.public_key()
    ext = a.certificate.extensions.get_extension_for_oid(EXTENSION_OID)
    assert not ext.critical
    signed = SignedKey.from_der(ext.value.value)  # type: ignore[attr-defined]
    assert signed.public_key == me.public_key.to_protobuf()
    assert verify_certificate(a.der)[0] == PeerID.from_public_key(me.public_key)


def test_a_critical_libp2p_extension_is_accepted() -> None:
    me = PrivateKey.generate()
    cert = make_certificate_for(me.public_key, me.sign, critical=True)
    assert verify_certificate(cert.der)[1] == me.public_key


def test_signed_key_der_round_trip_and_long_lengths() -> None:
    signed = SignedKey(b"k" * 300, b"s" * 70)
    assert SignedKey.from_der(signed.to_der()) == signed


# --- rejections ---------------------------------------------------------------------------------


def test_wrong_peer_id_is_refused() -> None:
    cert = make_certificate(PrivateKey.generate())
    other = PeerID.from_public_key(PrivateKey.generate().public_key)
    with pytest.raises(PeerIDMismatchError):
        verify_certificate_chain([cert.der], other)


def test_chains_of_zero_or_two_certificates_are_refused() -> None:
    cert = make_certificate(PrivateKey.generate())
    with pytest.raises(CertificateError, match="exactly one"):
        verify_certificate_chain([])
    with pytest.raises(CertificateError, match="exactly one"):
        verify_certificate_chain([cert.der, cert.der])


def _build(
    *,
    extensions: list[tuple[x509.ExtensionType, bool]],
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | None = None,
    signer: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before or now - datetime.timedelta(hours=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=1))
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    signer = signer or key
    digest = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, digest).public_bytes(DER)


def _proof(identity: PrivateKey, key: ec.EllipticCurvePrivateKey) -> x509.UnrecognizedExtension:
    spki = key.public_key().public_bytes(DER, SPKI)
    signed = SignedKey(identity.public_key.to_protobuf(), identity.sign(SIGNATURE_PREFIX + spki))
    return x509.UnrecognizedExtension(EXTENSION_OID, signed.to_der())


def test_certificate_without_the_extension_is_refused() -> None:
    with pytest.raises(CertificateError, match="lacks the libp2p"):
        verify_certificate(_build(extensions=[]))


def test_extension_signed_over_another_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    cert = _build(extensions=[(_proof(PrivateKey.generate(), other), False)], key=key)
    with pytest.raises(CertificateError, match="signature over the certificate key"):
        verify_certificate(cert)


def test_bad_self_signature_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(
        extensions=[(_proof(PrivateKey.generate(), key), False)],
        key=key,
        signer=ec.generate_private_key(ec.SECP256R1()),
    )
    with pytest.raises(CertificateError, match="self-signature"):
        verify_certificate(cert)


def test_expired_and_not_yet_valid_certificates_are_refused() -> None:
    me = PrivateKey.generate()
    cert = make_certificate(me).der
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365 * 101)
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    with pytest.raises(CertificateError, match="not valid now"):
        verify_certificate(cert, now=later)
    with pytest.raises(CertificateError, match="not valid now"):
        verify_certificate(cert, now=earlier)


def test_unknown_critical_extension_is_refused_and_unknown_noncritical_ignored() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    proof = (_proof(PrivateKey.generate(), key), False)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
    with pytest.raises(CertificateError, match="unknown critical"):
        verify_certificate(_build(extensions=[proof, (unknown, True)], key=key))
    verify_certificate(_build(extensions=[proof, (unknown, False)], key=key))


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x30\x00",
        b"\x30\x02\x04\x00",  # one octet string only
        b"\x30\x04\x04\x00\x04\x00\x00",  # trailing byte after the sequence
        b"\x30\x81\x04\x04\x00\x04\x00",  # non-minimal length
        b"\x30\x06\x04\x00\x04\x00\x05\x00",  # a third element
        b"\x31\x04\x04\x00\x04\x00",  # SET, not SEQUENCE
    ],
)
def test_malformed_signed_key_is_refused(value: bytes) -> None:
    with pytest.raises(CertificateError):
        SignedKey.from_der(value)


def test_identity_key_that_does_not_parse_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bad = x509.UnrecognizedExtension(EXTENSION_OID, SignedKey(b"\x08\x01\x12\x01x", b"").to_der())
    with pytest.raises(CertificateError, match="bad identity key"):
        verify_certificate(_build(extensions=[(bad, False)], key=key))


def test_garbage_and_oversized_certificates_are_refused() -> None:
    with pytest.raises(CertificateError, match="malformed"):
        verify_certificate(b"\x30\x03\x02\x01\x00")
    with pytest.raises(CertificateError, match="too large"):
        verify_certificate(b"\x00" * 20_000)


def test_ed25519_certificate_key_is_verified_too() -> None:
    # a peer may sign its certificate with an Ed25519 key (rust may); we must accept it
    me = PrivateKey.generate()
    key = ed25519.Ed25519PrivateKey.generate()
    spki = key.public_key().public_bytes(DER, SPKI)
    signed = SignedKey(me.public_key.to_protobuf(), me.sign(SIGNATURE_PREFIX + spki))
    ext = x509.UnrecognizedExtension(EXTENSION_OID, signed.to_der())
    assert verify_certificate(_build(extensions=[(ext, False)], key=key))[1] == me.public_key


def test_unknown_signature_algorithm_is_a_certificate_error() -> None:
    # found by tests/p2p/test_quic_fuzz.py: an unknown outer signature OID made
    # cryptography raise UnsupportedAlgorithm out of the verifier (into aioquic's TLS)
    der = make_certificate(PrivateKey.generate()).der
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    at = der.rindex(ecdsa_sha256)  # the outer signatureAlgorithm, after the TBS part
    broken = der[: at + len(ecdsa_sha256) - 1] + b"\x7f" + der[at + len(ecdsa_sha256) :]
    with pytest.raises(CertificateError):
        verify_certificate(broken)


def test_malformed_issuer_is_a_certificate_error() -> None:
    # found by fuzzing too: cryptography parses the issuer lazily and raised ValueError
    der = make_certificate(PrivateKey.generate()).der
    serial_attr = bytes.fromhex("0603550405") + b"\x13"  # serialNumber, PrintableString
    at = der.index(serial_attr) + len(serial_attr) - 1  # the issuer's, before the subject's
    broken = der[:at] + b"\x11" + der[at + 1 :]
    with pytest.raises(CertificateError):
        verify_certificate(broken)


def test_invalid_version_is_a_certificate_error() -> None:
    # and again: cryptography's InvalidVersion is neither a ValueError nor UnsupportedAlgorithm
    der = make_certificate(PrivateKey.generate()).der
    v3 = bytes.fromhex("a003020102")
    at = der.index(v3) + len(v3) - 1
    with pytest.raises(CertificateError):
        verify_certificate(der[:at] + b"\x03" + der[at + 1 :])


def test_a_certificate_seen_again_is_not_verified_again_but_its_validity_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reconnecting to a peer brings the same certificate bytes: the parse and both
    signature checks are remembered, the validity window is checked at every use, and a
    refused certificate is never remembered."""
    import zikade_py.p2p.tls as tls

    calls: list[int] = []
    verify = tls._verify

    def counting(cert: x509.Certificate, now: datetime.datetime | None) -> tuple[PeerID, PublicKey]:
        calls.append(1)
        return verify(cert, now)

    monkeypatch.setattr(tls, "_verify", counting)
    me = PrivateKey.generate()
    cert = make_certificate(me).der
    first = verify_certificate(cert)
    assert verify_certificate(cert) == first
    assert first[0] == PeerID.from_public_key(me.public_key)
    assert len(calls) == 1
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365 * 101)
    with pytest.raises(CertificateError, match="not valid now"):
        verify_certificate(cert, now=later)
    bad = make_certificate_for(me.public_key, PrivateKey.generate().sign).der
    for _ in range(2):
        with pytest.raises(CertificateError):
            verify_certificate(bad)
    assert len(calls) == 3  # the refused one was checked both times
    monkeypatch.setattr(tls, "VERIFIED_CACHE_SIZE", 2)
    for _ in range(3):  # bounded: the least recently used one goes
        verify_certificate(make_certificate(PrivateKey.generate()).der)
    assert len(tls._verified) <= 2 and cert not in tls._verified
