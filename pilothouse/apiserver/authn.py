"""Authentication: who is calling.

Three ways in, as kube-apiserver offers them:
- a client certificate signed by the cluster CA (CN = user, O = groups), checked by the
  TLS layer; the HTTP protocol puts the verified subject into the request scope;
- a static bearer token from `pki/tokens.csv` (kube-apiserver's --token-auth-file format:
  `token,user,uid,"group1,group2"`), used by the admin and the platform's components;
- a service-account token: an ES256 JWT this server signed (`serviceaccounts/token`),
  valid while unexpired and while its service account (and bound pod) still exist.

No credential means anonymous: only the public health and version endpoints answer it.
"""

from __future__ import annotations

import base64
import csv
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .rbac import UserInfo

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = (ISSUER,)
DEFAULT_EXPIRATION = 3600
AUTHENTICATED = "system:authenticated"

#: (namespace, name, uid, pod name or None, pod uid or None) -> exists?
ObjectCheck = Callable[[str, str, str, str | None, str | None], Awaitable[bool]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServiceAccountTokens:
    """Issues and verifies service-account JWTs (ES256)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._public = key.public_key()

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        audiences: tuple[str, ...] = DEFAULT_AUDIENCES,
        expiration_seconds: int = DEFAULT_EXPIRATION,
        pod: tuple[str, str] | None = None,
    ) -> tuple[str, int]:
        """A signed token and its expiry (unix seconds)."""
        issued = int(time.time())
        expires = issued + expiration_seconds
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        }
        if pod is not None:
            private["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": list(audiences),
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "kubernetes.io": private,
        }
        header = _b64(orjson.dumps({"alg": "ES256", "typ": "JWT"}))
        body = _b64(orjson.dumps(claims))
        signing_input = f"{header}.{body}".encode()
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{header}.{body}.{_b64(signature)}", expires

    def verify(self, token: str, audiences: tuple[str, ...] = DEFAULT_AUDIENCES) -> dict | None:
        """The claims of a token this server signed and that is still valid, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_unb64(parts[0]))
            claims = orjson.loads(_unb64(parts[1]))
            raw = _unb64(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            return None
        if header.get("alg") != "ES256" or len(raw) != 64 or claims.get("iss") != ISSUER:
            return None
        signature = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                         int.from_bytes(raw[32:], "big"))
        try:
            self._public.verify(signature, f"{parts[0]}.{parts[1]}".encode(),
                                ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        now = time.time()
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            return None
        token_audiences = claims.get("aud") or []
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        if not set(token_audiences) & set(audiences):
            return None
        return claims


def load_token_file(path: Path) -> dict[str, UserInfo]:
    users: dict[str, UserInfo] = {}
    if not path.exists():
        return users
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 3 or not row[0]:
                continue
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            users[row[0]] = UserInfo(row[1], row[2], groups + (AUTHENTICATED,))
    return users


def user_from_certificate(subject: Mapping[str, list[str]]) -> UserInfo | None:
    common = subject.get("commonName") or []
    if not common:
        return None
    groups = tuple(subject.get("organizationName") or ())
    return UserInfo(common[0], "", groups + (AUTHENTICATED,))


class Authenticator:
    def __init__(
        self,
        *,
        tokens: dict[str, UserInfo],
        service_accounts: ServiceAccountTokens,
        object_exists: ObjectCheck,
    ) -> None:
        self._tokens = tokens
        self._sa = service_accounts
        self._exists = object_exists

    async def authenticate(
        self, authorization: str, cert_subject: Mapping[str, list[str]] | None
    ) -> UserInfo | None:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return await self.authenticate_token(token.strip())
        if cert_subject:
            return user_from_certificate(cert_subject)
        return None

    async def authenticate_token(
        self, token: str, audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    ) -> UserInfo | None:
        for known, user in self._tokens.items():
            if hmac.compare_digest(known, token):
                return user
        claims = self._sa.verify(token, audiences)
        if claims is None:
            return None
        private = claims.get("kubernetes.io") or {}
        namespace = private.get("namespace", "")
        account = private.get("serviceaccount") or {}
        pod = private.get("pod") or {}
        if not await self._exists(namespace, account.get("name", ""), account.get("uid", ""),
                                  pod.get("name"), pod.get("uid")):
            return None
        extra: dict[str, tuple[str, ...]] = {}
        if pod:
            extra["authentication.kubernetes.io/pod-name"] = (pod.get("name", ""),)
            extra["authentication.kubernetes.io/pod-uid"] = (pod.get("uid", ""),)
        return UserInfo(
            f"system:serviceaccount:{namespace}:{account.get('name', '')}",
            account.get("uid", ""),
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
            extra,
        )
