"""The cluster's credentials: CA, serving certificate, client certificates, signing key.

Created on first start under `<data-dir>/pki/` and reused after (kubeadm lays out the same
pieces). Keys are ECDSA P-256: small, fast to generate, and accepted by kubectl and the
Python client. The admin identity is a client certificate (CN = user, O = groups), as
kubeadm's admin.conf is; the service-account signing key signs the JWTs that
`serviceaccounts/token` issues. The API server calls kubelets (logs, exec, stats) with its
own client certificate, `apiserver-kubelet-client.crt` (CN kube-apiserver-kubelet-client,
no group), which kubelets authorize through a SubjectAccessReview like any other caller.

The serving certificate names every address clients reach the API server by: loopback and
the `kubernetes` Service's cluster IP (the first address of the service range, a setting);
when an existing certificate lacks one of them (the range changed) it is issued again.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..machinery.certs import certificate_builder

CA_DAYS = 3650
LEAF_DAYS = 365
SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
#: Addresses every serving certificate carries, beside those the server asks for.
SERVING_IPS = ("127.0.0.1", "::1")
ADMIN_USER = "pilothouse-admin"
ADMIN_GROUPS = ("system:masters",)
#: Who the API server is to the kubelets (kubeadm's apiserver-kubelet-client certificate).
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@dataclass(frozen=True)
class PKI:
    """Paths of the cluster's credentials; `ensure()` creates what is missing."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def kubelet_client_cert(self) -> Path:
        return self.root / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.root / "apiserver-kubelet-client.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def tokens_file(self) -> Path:
        return self.root / "tokens.csv"

    def client_cert(self, user: str) -> tuple[Path, Path]:
        return self.root / f"{user}.crt", self.root / f"{user}.key"

    def ensure(self, *, serving_ips: Sequence[str] = ()) -> None:
        """Create what is missing; `serving_ips` are addresses (beyond loopback) the serving
        certificate must name, such as the `kubernetes` Service's cluster IP."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if not self.ca_cert.exists() or not self.ca_key.exists():
            self._make_ca()
        ips = tuple(dict.fromkeys((*SERVING_IPS, *serving_ips)))
        if not self.serving_cert.exists() or not self.serving_key.exists() or (
                not self._serving_cert_names(ips)):
            self._make_leaf(self.serving_cert, self.serving_key, "kube-apiserver", (),
                            serving=True, ips=ips)
        if not self.kubelet_client_cert.exists() or not self.kubelet_client_key.exists():
            self._make_leaf(self.kubelet_client_cert, self.kubelet_client_key,
                            KUBELET_CLIENT_USER, (), serving=False)
        if not self.sa_key.exists():
            _write_private(self.sa_key, _key_pem(ec.generate_private_key(ec.SECP256R1())))
        cert, key = self.client_cert(ADMIN_USER)
        if not cert.exists() or not key.exists():
            self._make_leaf(cert, key, ADMIN_USER, ADMIN_GROUPS, serving=False)
        if not self.tokens_file.exists():
            admin_token = secrets.token_urlsafe(32)
            _write_private(
                self.tokens_file,
                f'{admin_token},{ADMIN_USER},{ADMIN_USER},"{",".join(ADMIN_GROUPS)}"\n'.encode(),
            )

    def ensure_client(self, user: str, groups: tuple[str, ...]) -> tuple[Path, Path]:
        """A client certificate for a component identity (created once)."""
        cert, key = self.client_cert(user.replace(":", "-"))
        if not cert.exists() or not key.exists():
            self._make_leaf(cert, key, user, groups, serving=False)
        return cert, key

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pilothouse-ca")])
        cert = (
            certificate_builder(name, name, key.public_key(), days=CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key, _key_pem(key))
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _serving_cert_names(self, ips: tuple[str, ...]) -> bool:
        """Whether the serving certificate on disk names every one of `ips`."""
        cert = x509.load_pem_x509_certificate(self.serving_cert.read_bytes())
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        named = set(sans.get_values_for_type(x509.IPAddress))
        return all(ipaddress.ip_address(ip) in named for ip in ips)

    def _make_leaf(
        self, cert_path: Path, key_path: Path, cn: str, groups: tuple[str, ...], *, serving: bool,
        ips: tuple[str, ...] = SERVING_IPS,
    ) -> None:
        ca_key = _load_key(self.ca_key)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        builder = (
            certificate_builder(x509.Name(attrs), ca_cert.subject, key.public_key(),
                                days=LEAF_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if serving else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if serving:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_NAMES]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return _load_key(path)
