"""TLS for every MedChain server: a development CA, certificates, and SSL contexts.

Health data crosses the network between staff, nodes and custodian edges (an
edge's FHIR API returns plaintext FHIR), so every server speaks HTTPS and every
client verifies the server against a CA it trusts. `medchain init` makes a
development CA per home (`<home>/tls/ca.pem`); hospitals use their own PKI
instead (docs/tls.md).

Why ECDSA P-256 and not SM2 certificates with the RFC 8998 suites: the system
OpenSSL 3.0 that Python's `ssl` links against has no SM TLS at all. Checked on
this project's machine (OpenSSL 3.0.19): `openssl ciphers -v | grep -i sm`
lists nothing, `openssl ciphers -ciphersuites TLS_SM4_GCM_SM3` and
`TLS_SM4_CCM_SM3` fail with "no cipher match", `openssl list
-cipher-algorithms` has SM4-CBC/CFB/CTR/ECB/OFB but no SM4-GCM or SM4-CCM,
`ssl.SSLContext.set_ciphers` refuses ECC-SM4-SM3 / ECDHE-SM4-SM3 /
TLS_SM4_GCM_SM3 ("No cipher can be selected"), and Python's `ssl` has no way
to set TLS 1.3 suites at all. `sm_tls_available()` repeats the check at run
time. SM TLS needs a Tongsuo/GmSSL build, which is out of this tree; the
ledger's own signatures and record encryption stay SM2/SM3/SM4 either way.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medchain.exceptions import MedChainError

CA_DAYS = 3650
LEAF_DAYS = 825
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
RFC8998_SUITES = ("TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3")


class TlsError(MedChainError):
    """A certificate or key is missing, unreadable, or not what was asked for."""


@dataclass(frozen=True)
class TlsDir:
    """The TLS files of one home: `<home>/tls/{ca.pem, ca.key, NAME.pem, NAME.key}`."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every client and server of this home trusts."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key, to issue certificates (kept 0600)."""
        return self.root / "ca.key"

    def cert(self, name: str) -> Path:
        """Where certificate `name` is kept."""
        return self.root / f"{name}.pem"

    def key(self, name: str) -> Path:
        """Where private key `name` is kept (0600)."""
        return self.root / f"{name}.key"

    def has(self, name: str) -> bool:
        """Whether both the certificate and the key of `name` exist."""
        return self.cert(name).exists() and self.key(name).exists()


@dataclass(frozen=True)
class ServerTls:
    """What a server needs to speak HTTPS; with `client_ca` it also demands a client
    certificate signed by that CA (mutual TLS) and refuses the handshake without one."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts and (for mutual TLS) presents. `ca` None: the system's
    trust store, as for any public HTTPS site."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """The SSL context for these settings (TLS 1.2+, see client_context)."""
        return client_context(self)


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MedChain"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str] | tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def create_ca(tls: TlsDir, common_name: str, passphrase: str) -> Path:
    """A development CA (ECDSA P-256, 10 years, may sign leaf certificates only).
    Its key is encrypted with `passphrase`: whoever holds it can impersonate every
    node and edge that trusts this CA."""
    if tls.ca_cert.exists() or tls.ca_key.exists():
        raise TlsError(f"a CA already exists in {tls.root}")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        tls.ca_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        ),
    )
    tls.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tls.ca_cert


def issue_certificate(tls: TlsDir, name: str, hosts: list[str], passphrase: str) -> Path:
    """Sign `<name>.pem` (and make `<name>.key`) with the home's CA, valid for `hosts`
    (DNS names or IP addresses) as a server and as a client (mutual TLS)."""
    if not name.replace("-", "").replace("_", "").isalnum() or name == "ca":
        raise TlsError(f"bad certificate name {name!r}: use letters, digits, - and _")
    if not hosts:
        raise TlsError("a certificate needs at least one --host")
    if tls.cert(name).exists() or tls.key(name).exists():
        raise TlsError(f"{tls.cert(name)} exists: pick another name or delete it first")
    try:
        ca_cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), passphrase.encode())
    except FileNotFoundError:
        raise TlsError(f"no CA in {tls.root}: run `medchain init` first") from None
    except (ValueError, TypeError):
        raise TlsError("cannot open the CA key: wrong passphrase?") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{tls.ca_key} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(
        tls.key(name),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    tls.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tls.cert(name)


def describe_certificate(path: Path) -> dict[str, str | list[str]]:
    """Subject, issuer, expiry and the DNS names and IP addresses a certificate is
    valid for (what an operator checks before deploying it)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        hosts = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "hosts": hosts,
    }


def server_context(tls: ServerTls) -> ssl.SSLContext:
    """TLS 1.2+ server context; with `client_ca`, a client certificate is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls.client_ca is not None:
            ctx.load_verify_locations(tls.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load TLS files {tls}: {e}") from None
    return ctx


@lru_cache(maxsize=32)
def client_context(tls: ClientTls) -> ssl.SSLContext:
    """TLS 1.2+ client context that verifies the server's certificate and host name
    against `tls.ca` (or the system store), presenting `tls.cert` when given.
    Cached: loading a CA per request would cost more than the request."""
    try:
        ctx = ssl.create_default_context(cafile=None if tls.ca is None else str(tls.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert is not None:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load TLS files {tls}: {e}") from None
    return ctx


_default_client = ClientTls()


def use_client_tls(tls: ClientTls) -> None:
    """Set what this process's clients trust and present when not told otherwise
    (the CLI sets it from --ca or the home's CA; the demo from its dev CA)."""
    global _default_client
    _default_client = tls


def default_client_tls() -> ClientTls:
    """What this process's clients use when not told otherwise (see use_client_tls)."""
    return _default_client


def sm_tls_available() -> bool:
    """Whether the OpenSSL behind Python's `ssl` offers any SM TLS cipher (TLCP or
    RFC 8998). False with Debian's OpenSSL 3.0; see the module docstring."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    names = {c["name"] for c in ctx.get_ciphers()}
    if any("SM4" in n or n in RFC8998_SUITES for n in names):
        return True
    for spec in ("ECC-SM4-SM3", "ECDHE-SM4-SM3", "ECC-SM4-GCM-SM3", "ECDHE-SM4-GCM-SM3"):
        try:
            ctx.set_ciphers(spec)
            return True
        except ssl.SSLError:
            continue
    return False


def create_dev_pki(tls: TlsDir, chain_id: str, hosts: list[str], passphrase: str) -> Path:
    """What `medchain init` makes: a development CA for the chain and the node's
    certificate (`node.pem`) for `hosts`; returns the CA certificate clients trust."""
    create_ca(tls, f"MedChain development CA ({chain_id})", passphrase)
    issue_certificate(tls, "node", hosts, passphrase)
    return tls.ca_cert
