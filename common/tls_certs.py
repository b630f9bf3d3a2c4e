"""Throwaway certificates for a local or test cluster, made with `cryptography`: one CA and one
certificate per node, each valid for 127.0.0.1, localhost and the node's advertised hosts.

Owns: key and certificate generation (`new_ca`, `new_leaf`, returning PEM bytes) and writing them
under a directory (`write_cluster_certs`: ca.pem, NAME.pem, NAME.key; keys mode 0600). Not for
production: a real deployment brings certificates from its own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OrbitMQ local cluster"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            entries.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(entries)


def new_ca(name: str = "OrbitMQ throwaway CA", now: datetime.datetime | None = None) -> Issued:
    """A self-signed CA (EC P-256)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def new_leaf(ca: Issued, name: str, hosts: list[str], now: datetime.datetime | None = None) -> Issued:
    """A certificate for `name` signed by `ca`, valid as server and client, for `hosts`
    (IP addresses and DNS names; 127.0.0.1 and localhost are always added)."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san([*hosts, *DEFAULT_HOSTS]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_cluster_certs(directory: str | Path, nodes: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """Under `directory`: ca.pem (+ ca.key) made once, and NAME.pem / NAME.key for every node in
    `nodes` (name -> its hosts) that has none yet. Returns name -> (cert path, key path); the CA
    is at `directory/ca.pem`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = d / "ca.pem", d / "ca.key"
    if ca_pem.exists() and ca_key.exists():
        ca = Issued(ca_pem.read_bytes(), ca_key.read_bytes())
    else:
        ca = new_ca()
        _write(ca_key, ca.key_pem, 0o600)
        _write(ca_pem, ca.cert_pem, 0o644)
    out: dict[str, tuple[str, str]] = {}
    for name, hosts in nodes.items():
        cert, key = d / f"{name}.pem", d / f"{name}.key"
        if not (cert.exists() and key.exists()):
            leaf = new_leaf(ca, name, hosts)
            _write(key, leaf.key_pem, 0o600)
            _write(cert, leaf.cert_pem, 0o644)
        out[name] = (str(cert), str(key))
    return out
