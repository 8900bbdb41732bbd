"""X.509 building blocks shared by the cluster's PKI (`apiserver/pki.py`) and the node
agent's self-signed serving certificate (`node/server.py`): one place that sets a
certificate's names, key, serial and validity, so every certificate the platform makes
is dated the same way."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

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
