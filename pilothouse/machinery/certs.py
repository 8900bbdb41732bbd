"""X.509 building blocks shared by the cluster's PKI (`apiserver/pki.py`), the node
agent's self-signed serving certificate (`node/server.py`) and admission webhook servers
(`serving_chain`): one place that sets a certificate's names, key, serial and validity, so
every certificate the platform makes is dated the same way."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

#: Certificates start this far in the past, so a peer's clock running a little behind
#: still accepts them.
BACKDATE = datetime.timedelta(minutes=5)


def certificate_builder(subject: x509.Name, issuer: x509.Name,
                        public_key: CertificatePublicKeyTypes, *,
                        days: int) -> x509.CertificateBuilder:
    """A builder with subject, issuer, public key, a random serial and `days` of validity;
    the caller adds its extensions and signs."""
    start = datetime.datetime.now(datetime.UTC) - BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def serving_chain(name: str, *, ips: Iterable[str] = (), dns_names: Iterable[str] = (),
                  days: int = 365) -> tuple[bytes, bytes, bytes]:
    """A new CA of its own and a serving certificate it signs for `ips` and `dns_names`,
    as (CA PEM, certificate PEM, key PEM): what a webhook server hands the API server as
    its `caBundle` and serves with (the CA is `<name>-ca`, the leaf `<name>`)."""
    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"{name}-ca")
    ca = (certificate_builder(ca_name, ca_name, ca_key.public_key(), days=days)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(dns) for dns in dns_names]
    cert = (certificate_builder(subject(name), ca_name, key.public_key(), days=days)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
