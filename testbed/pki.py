"""Certificates for the control plane: one CA, a serving cert, client certs, the SA key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# ECDSA keys: generating them takes microseconds where RSA takes tens of milliseconds,
# and kube-apiserver accepts them for serving, client auth and ES256 token signing.
_CURVE = ec.SECP256R1()
_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class ControlPlanePKI:
    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    sa_public: Path
    sa_private: Path
    controller_manager: KeyPair
    scheduler: KeyPair
    kwok: KeyPair


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _new_ca(directory: Path) -> tuple[KeyPair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(_CURVE)
    name = _name("reconciler-testbed-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(
        _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM)),
        _write(directory / "ca.key", _key_pem(key)),
    )
    return pair, cert, key


def _issue(
    directory: Path,
    stem: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    server: bool,
) -> KeyPair:
    key = ec.generate_private_key(_CURVE)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv4Address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(
        _write(directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
        _write(directory / f"{stem}.key", _key_pem(key)),
    )


def create(directory: Path) -> ControlPlanePKI:
    """Write a fresh CA, apiserver serving cert, SA key pair and one client cert per client.

    The controller-manager and scheduler get the user names the bootstrap RBAC policy
    binds (system:kube-controller-manager, system:kube-scheduler), as kubeadm's do.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_cert, ca_key = _new_ca(directory)
    serving = _issue(directory, "apiserver", ca_cert, ca_key, _name("kube-apiserver"), server=True)
    # system:masters is bound to cluster-admin by the bootstrap RBAC policy.
    admin = _issue(
        directory, "admin", ca_cert, ca_key, _name("admin", "system:masters"), server=False
    )
    sa_key = ec.generate_private_key(_CURVE)
    sa_private = _write(directory / "sa.key", _key_pem(sa_key))
    sa_public = _write(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    clients = {
        stem: _issue(directory, stem, ca_cert, ca_key, subject, server=False)
        for stem, subject in (
            ("controller-manager", _name("system:kube-controller-manager")),
            ("scheduler", _name("system:kube-scheduler")),
            # kwok writes the status of every fake Node and their Pods, which the Node
            # authorizer grants only to each node's own kubelet identity.
            ("kwok", _name("kwok", "system:masters")),
        )
    }
    return ControlPlanePKI(
        ca,
        serving,
        admin,
        sa_public,
        sa_private,
        controller_manager=clients["controller-manager"],
        scheduler=clients["scheduler"],
        kwok=clients["kwok"],
    )
