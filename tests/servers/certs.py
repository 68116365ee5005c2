"""Certificates made for a test: a test CA and leaves that are valid, expired, not yet valid,
for the wrong host, from an unknown CA, or self-signed — written as PEM files so that real
TLS servers (and curl/openssl in bench/) can load them.

EC P-256 keys keep generation fast (a fraction of a millisecond, where RSA takes tens).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class CertFiles:
    """A leaf certificate and its key on disk; `der` is what the server presents."""

    cert: Path
    key: Path
    der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertFiles:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return CertFiles(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))


class TestCA:
    """A root CA whose PEM file (`path`) a test trusts through Vantage(extra_ca_files=...)."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "monitor test CA"):
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = name.replace(" ", "-")
        self.path = directory / f"{stem}.pem"
        self.path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, *names: str, stem: str, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> CertFiles:
        """A server leaf for `names` (DNS names or IP literals), valid now unless told otherwise."""
        now = dt.datetime.now(dt.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - DAY)
            .not_valid_after(not_after or now + 90 * DAY)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return _write(self.directory, stem, cert, key)


def self_signed(directory: Path, *names: str, stem: str = "self-signed") -> CertFiles:
    """A leaf that is its own issuer (OpenSSL: 'self-signed certificate', verify code 18)."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(_name(names[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 90 * DAY)
        .add_extension(_san(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key)


@dataclass(frozen=True)
class Pki:
    """Everything a TLS test needs: the trusted CA file and one leaf per way a cert can be bad."""

    ca_path: Path
    valid: CertFiles          # localhost + 127.0.0.1, from the trusted CA
    expired: CertFiles
    not_yet_valid: CertFiles
    wrong_host: CertFiles     # valid, but for other.example only
    unknown_ca: CertFiles     # valid, but from a CA nobody trusts
    self_signed: CertFiles


def make_pki(directory: Path) -> Pki:
    now = dt.datetime.now(dt.timezone.utc)
    ca = TestCA(directory)
    stranger = TestCA(directory, name="unknown test CA")
    return Pki(
        ca_path=ca.path,
        valid=ca.issue("localhost", "127.0.0.1", stem="valid"),
        expired=ca.issue("localhost", "127.0.0.1", stem="expired", not_before=now - 30 * DAY, not_after=now - DAY),
        not_yet_valid=ca.issue("localhost", "127.0.0.1", stem="not-yet-valid", not_before=now + DAY, not_after=now + 30 * DAY),
        wrong_host=ca.issue("other.example", stem="wrong-host"),
        unknown_ca=stranger.issue("localhost", "127.0.0.1", stem="unknown-ca"),
        self_signed=self_signed(directory, "localhost", "127.0.0.1"),
    )
