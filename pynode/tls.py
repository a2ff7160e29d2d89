"""TLS for the distribution connections: configuration, contexts, and a throwaway CA.

Erlang's ``-proto_dist inet_tls`` in small. Without TLS, the cookie handshake proves who is on
the other end, but everything after it (pickled closures, arguments, results) travels in clear
text, and an attacker on the path can read it or take over the connection. With TLS, every
connection between two nodes runs inside TLS 1.3 with mutual authentication: both nodes present
certificates signed by the cluster's CA, and the cookie handshake still runs, inside the TLS
channel (:mod:`pynode.handshake`). A TLS node and a plain one refuse each other, each saying why.
The port mapper stays plain TCP, as EPMD does: it only maps names to ports.

Certificates are checked against the CA, not against host names: membership of the cluster is
what the CA signs, and which node is which is what the cookie handshake proves (the node names
are bound into its proofs). ``pynode tls init DIR`` (:func:`init`) makes a CA and node
certificates for tests and a first try; a real deployment uses its own CA.

Configuration: ``Node.start(..., tls=pynode.TLS(certfile, keyfile, cafile))``, else the
environment (``PYNODE_TLS_CERTFILE``, ``PYNODE_TLS_KEYFILE``, ``PYNODE_TLS_CAFILE``: all three or
none), the ``pynode start --tls-*`` flags, or a cluster file's ``[tls]`` table.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pynode.errors import TLSError

CERTFILE_ENV = "PYNODE_TLS_CERTFILE"
KEYFILE_ENV = "PYNODE_TLS_KEYFILE"
CAFILE_ENV = "PYNODE_TLS_CAFILE"
VERIFY_PEER_ENV = "PYNODE_TLS_VERIFY_PEER"  # "false" or "0" turns verify_peer off
# Validity of the certificates `pynode tls init` makes: they are for tests and a first try.
THROWAWAY_DAYS = 365


@dataclass(frozen=True)
class TLS:
    """A node's TLS files: its certificate chain and key (PEM) and the cluster CA's certificate.

    ``verify_peer`` (default True): require and check the peer's certificate against ``cafile``
    on both ends. False only encrypts (any certificate is accepted; the cookie still
    authenticates the peer) and is meant for debugging.
    """

    certfile: str
    keyfile: str
    cafile: str
    verify_peer: bool = True

    @classmethod
    def in_directory(cls, directory: str | os.PathLike[str], name: str, *,
                     ca: str | os.PathLike[str] | None = None, verify_peer: bool = True) -> TLS:
        """The files :func:`init` wrote for ``name``: ``NAME.pem``, ``NAME.key`` and ``ca.pem``
        in ``directory`` (``ca.pem`` from the directory ``ca`` instead, when given). Nothing is
        read here: a missing file is named when a context is first made (TLSError)."""
        where = Path(directory).expanduser()
        return cls(str(where / f"{name}.pem"), str(where / f"{name}.key"),
                   str(Path(ca).expanduser() / "ca.pem" if ca is not None else where / "ca.pem"), verify_peer)

    def server_context(self) -> ssl.SSLContext:
        """The context of the accepting side. Raises TLSError naming the unusable file."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._configure(ctx)
        ctx.num_tickets = 0  # no session resumption: connections are long-lived, and no
        # post-handshake ticket message may reach a reader that waits for data with a deadline
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """The context of the dialling side. Raises TLSError naming the unusable file."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # see the module docstring: the CA signs membership
        self._configure(ctx)
        return ctx

    def _configure(self, ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        for label, path in (("certificate", self.certfile), ("key", self.keyfile), ("CA", self.cafile)):
            if not os.path.isfile(path):
                raise TLSError(f"TLS {label} file {path!r} does not exist")
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(
                f"cannot load the TLS certificate {self.certfile!r} with key {self.keyfile!r}: {exc}"
            ) from exc
        try:
            ctx.load_verify_locations(cafile=self.cafile)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(f"cannot load the TLS CA file {self.cafile!r}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if self.verify_peer else ssl.CERT_NONE


def from_files(certfile: str | None, keyfile: str | None, cafile: str | None, where: str,
               verify_peer: bool = True) -> TLS | None:
    """A TLS from three paths that must all be given or all be absent (None). Raises TLSError
    naming ``where`` and the missing ones."""
    given = {"certfile": certfile, "keyfile": keyfile, "cafile": cafile}
    if not any(given.values()):
        return None
    missing = [key for key, value in given.items() if not value]
    if missing:
        raise TLSError(f"{where}: TLS needs certfile, keyfile and cafile; {', '.join(missing)} missing")
    expand = os.path.expanduser
    return TLS(expand(certfile), expand(keyfile), expand(cafile), verify_peer)  # type: ignore[arg-type]


def from_env(env: Mapping[str, str] | None = None) -> TLS | None:
    """The TLS configuration of ``PYNODE_TLS_CERTFILE/KEYFILE/CAFILE``, None when none is set."""
    env = os.environ if env is None else env
    verify = env.get(VERIFY_PEER_ENV, "true").strip().lower() not in ("0", "false", "no")
    return from_files(env.get(CERTFILE_ENV), env.get(KEYFILE_ENV), env.get(CAFILE_ENV),
                      f"${CERTFILE_ENV}/${KEYFILE_ENV}/${CAFILE_ENV}", verify)


def env_for(tls: TLS) -> dict[str, str]:
    """The environment variables that give a node process ``tls``."""
    return {CERTFILE_ENV: tls.certfile, KEYFILE_ENV: tls.keyfile, CAFILE_ENV: tls.cafile,
            VERIFY_PEER_ENV: "true" if tls.verify_peer else "false"}


def init(directory: str | os.PathLike[str], names: Sequence[str] = ("node",),
         hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """Create a throwaway cluster CA and one certificate per name in ``directory``.

    Writes ``ca.pem`` and ``ca.key`` (keep the key to sign more certificates, or delete it), and
    ``NAME.pem``/``NAME.key`` for each of ``names``, valid for ``hosts`` (IP addresses or DNS
    names: a client that checks host names can use them; pynode itself does not, see the module
    docstring) for THROWAWAY_DAYS days. Keys are written owner-only (0600). Returns the paths by
    file name. Raises TLSError when a file already exists (nothing is overwritten).

    Uses the ``cryptography`` package: making certificates with extensions (CA constraints, key
    usages, subject alternative names) through the ``openssl`` command needs a configuration
    file per certificate, differs between OpenSSL/LibreSSL versions and is missing on some systems.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory).expanduser()
    files = ["ca.pem", "ca.key"] + [f"{name}{ext}" for name in names for ext in (".pem", ".key")]
    for name in names:
        if not name or "/" in name or name.startswith(".") or name == "ca":
            raise TLSError(f"certificate name {name!r} must be a plain file name other than 'ca'")
    existing = [f for f in files if (out / f).exists()]
    if existing:
        raise TLSError(f"{out} already holds {', '.join(existing)}; choose an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=THROWAWAY_DAYS)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def write(name: str, data: bytes, secret: bool) -> Path:
        path = out / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pynode throwaway cluster CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca.pem": write("ca.pem", ca.public_bytes(serialization.Encoding.PEM), False),
             "ca.key": write("ca.key", key_pem(ca_key), True)}
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pynode {name}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        paths[f"{name}.pem"] = write(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), False)
        paths[f"{name}.key"] = write(f"{name}.key", key_pem(key), True)
    return paths
