"""Credentials for testing the edge's TLS and JWT: a self-signed certificate, a
JWKS of an RSA and an EC public key, and tokens signed with their private keys."""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://auth.test.example/"
AUDIENCE = "voice-pipeline"


@dataclass(frozen=True)
class EdgeCredentials:
    cert: Path
    key: Path
    jwks: Path
    signing_keys: dict  # kid -> (algorithm, private key)

    def token(self, kid: str = "rsa", audience: str = AUDIENCE, issuer: str = ISSUER,
              expires_in: float = 300, **more: object) -> str:
        """A signed token; ``more`` adds claims (e.g. scope="voices:write")."""
        algorithm, key = self.signing_keys[kid]
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "sub": "test-client",
                  "iat": now, "exp": int(now + expires_in), **more}
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def make(folder: Path) -> EdgeCredentials:
    """Writes tls.crt, tls.key and jwks.json into ``folder``."""
    cert, key = _self_signed(folder)
    signing = {
        "rsa": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    }
    keys = []
    for kid, (algorithm, private) in signing.items():
        public = jwt.get_algorithm_by_name(algorithm).to_jwk(private.public_key(), as_dict=True)
        keys.append({**public, "kid": kid, "alg": algorithm, "use": "sig"})
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    return EdgeCredentials(cert=cert, key=key, jwks=jwks, signing_keys=signing)
