"""Keys, certificates and CSRs of the mesh's public-key infrastructure, on `cryptography`.

One root of trust; an intermediate CA per cluster signed by it (Istio's plug-in `cacerts`: `ca-cert.pem`,
`ca-key.pem`, `root-cert.pem`, `cert-chain.pem`); workload certificates carrying only a SPIFFE URI SAN.
Defaults: ECDSA P-256 keys (RSA 2048-4096 and P-384 on request), root 10 years, intermediates 2 years,
workload certificates 24 hours.
"""

from __future__ import annotations

import datetime
import enum
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.model.identity import SpiffeId

ROOT_LIFETIME = datetime.timedelta(days=3650)
INTERMEDIATE_LIFETIME = datetime.timedelta(days=730)
WORKLOAD_LIFETIME = datetime.timedelta(hours=24)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # certificates start this early, for clocks slightly behind
ORGANIZATION = "Isthmus"

# Istio's samples/certs layout, the files of Secret `cacerts`
CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN = "ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(ValueError):
    """A key, certificate or CSR that cannot be used, and why."""


class KeyType(enum.Enum):
    """Key types the mesh creates and accepts."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    def generate(self) -> PrivateKey:
        if self is KeyType.EC_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyType.EC_P384:
            return ec.generate_private_key(ec.SECP384R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=int(self.value.removeprefix("rsa-")))

    @classmethod
    def of(cls, key: object) -> KeyType:
        """The type of a public or private key; PkiError names an unsupported one."""
        if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
            curves = {"secp256r1": cls.EC_P256, "secp384r1": cls.EC_P384}
            if key.curve.name in curves:
                return curves[key.curve.name]
            raise PkiError(f"unsupported elliptic curve {key.curve.name}: use P-256 or P-384")
        if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
            sizes = {2048: cls.RSA_2048, 3072: cls.RSA_3072, 4096: cls.RSA_4096}
            if key.key_size in sizes:
                return sizes[key.key_size]
            raise PkiError(f"unsupported RSA key size {key.key_size}: use 2048, 3072 or 4096 bits")
        raise PkiError(f"unsupported key type {type(key).__name__}: use ECDSA (P-256, P-384) or RSA")


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(data: bytes, where: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"{where}: unsupported key type {type(key).__name__}: use ECDSA or RSA")
    KeyType.of(key)
    return key


def load_certs(data: bytes, where: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; PkiError when there is none or one does not parse."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"{where}: not PEM certificates ({exc})") from None
    if not certs:
        raise PkiError(f"{where}: no certificate in it")
    return certs


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_root(
    common_name: str, key: PrivateKey, lifetime: datetime.timedelta = ROOT_LIFETIME
) -> x509.Certificate:
    """A self-signed root CA certificate."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )


@dataclass(frozen=True)
class Signer:
    """A CA that signs: its certificate and key, and the chain from it up to and including the root."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]  # issuers above `cert`, the root last; empty when `cert` is the root

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.cert

    def _issue(
        self,
        builder: x509.CertificateBuilder,
        public_key: CertificatePublicKeyTypes,
        lifetime: datetime.timedelta,
    ) -> x509.Certificate:
        now = _now()
        not_after = min(now + lifetime, self.cert.not_valid_after_utc)  # never outlives its issuer
        return (
            builder.issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, _hash_for(self.key))
        )

    def intermediate(
        self, common_name: str, key: PrivateKey, lifetime: datetime.timedelta = INTERMEDIATE_LIFETIME
    ) -> x509.Certificate:
        """An intermediate CA certificate (may sign workloads, not other CAs)."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
        )
        return self._issue(builder, key.public_key(), lifetime)

    def workload(
        self,
        public_key: CertificatePublicKeyTypes,
        identities: Sequence[str],
        lifetime: datetime.timedelta,
        dns_names: Sequence[str] = (),
    ) -> x509.Certificate:
        """A workload certificate: URI SANs `identities` (SPIFFE ids), no subject, client and server auth."""
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(i) for i in identities]
        sans += [x509.DNSName(d) for d in dns_names]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        return self._issue(builder, public_key, lifetime)

    def chain_pem(self, leaf: x509.Certificate) -> list[str]:
        """Leaf to root, one PEM per element (IstioCertificateResponse.cert_chain)."""
        certs = [leaf, self.cert, *self.chain]
        return [cert_pem(c).decode() for c in certs]


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `cert` (and the names chain)."""
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            assert cert.signature_hash_algorithm is not None
            public.verify(
                cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
            )
        elif isinstance(public, ec.EllipticCurvePublicKey):
            assert cert.signature_hash_algorithm is not None
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    """A certificate that may sign others: BasicConstraints CA and, when present, keyCertSign."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True


def same_public_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def load_plugin_ca(folder: Path) -> Signer:
    """A plug-in CA folder (Secret `cacerts` mounted): checked so a bad one fails at start, naming the file.

    `ca-cert.pem` must be a CA whose key is `ca-key.pem`, and `ca-cert.pem` + `cert-chain.pem` must chain to
    `root-cert.pem` (Istio #16337: a non-CA certificate was accepted, then every signature failed).
    """
    missing = [n for n in (CA_CERT, CA_KEY, ROOT_CERT) if not (folder / n).is_file()]
    if missing:
        raise PkiError(
            f"{folder}: missing {', '.join(missing)} (expected {CA_CERT}, {CA_KEY}, {ROOT_CERT}, {CERT_CHAIN})"
        )
    cert = load_certs((folder / CA_CERT).read_bytes(), str(folder / CA_CERT))[0]
    key = load_key((folder / CA_KEY).read_bytes(), str(folder / CA_KEY))
    roots = load_certs((folder / ROOT_CERT).read_bytes(), str(folder / ROOT_CERT))
    chain_path = folder / CERT_CHAIN
    chain = load_certs(chain_path.read_bytes(), str(chain_path)) if chain_path.is_file() else [cert]
    return check_signer(cert, key, chain, roots[0], str(folder))


def check_signer(
    cert: x509.Certificate,
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    where: str,
) -> Signer:
    """A Signer from a CA certificate, its key and its chain (which may start with the certificate itself)."""
    if not is_ca(cert):
        raise PkiError(
            f"{where}: {CA_CERT} is not a CA certificate (BasicConstraints CA:TRUE and keyCertSign needed)"
        )
    if not same_public_key(cert.public_key(), key.public_key()):
        raise PkiError(f"{where}: {CA_KEY} is not the key of {CA_CERT}")
    now = _now()
    if cert.not_valid_after_utc <= now:
        raise PkiError(f"{where}: {CA_CERT} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    above = [c for c in chain if c != cert and c != root]
    path = [cert, *above, root]
    for child, parent in itertools.pairwise(path):
        if not verify_signed_by(child, parent):
            raise PkiError(
                f"{where}: {child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}: "
                f"{CA_CERT} and {CERT_CHAIN} must chain to {ROOT_CERT}"
            )
    if cert == root:
        return Signer(cert, key, ())
    return Signer(cert, key, (*above, root))


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def new_csr(key: PrivateKey, identities: Sequence[str], dns_names: Sequence[str] = ()) -> bytes:
    """A PEM CSR for a workload key asking for the given SPIFFE ids (and DNS names)."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(i) for i in identities]
    names += [x509.DNSName(d) for d in dns_names]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .sign(key, _hash_for(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CsrRequest:
    """What a checked CSR asks for."""

    public_key: CertificatePublicKeyTypes
    key_type: KeyType
    uris: tuple[str, ...]
    dns_names: tuple[str, ...]


def parse_csr(pem: str | bytes) -> CsrRequest:
    """Parse and check a CSR (PEM, self-signature valid, supported key); PkiError says what is wrong."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise PkiError(f"the CSR is not a PEM certificate request ({exc})") from None
    if not csr.is_signature_valid:
        raise PkiError("the CSR's signature is not valid (it was not signed by its own key)")
    public = csr.public_key()
    key_type = KeyType.of(public)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris, dns = (), ()
    return CsrRequest(public, key_type, uris, dns)


def spiffe_ids_of(cert: x509.Certificate) -> list[SpiffeId]:
    """The SPIFFE ids among a certificate's URI SANs."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            out.append(SpiffeId.parse(uri))
        except ValueError:
            continue
    return out
