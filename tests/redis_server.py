"""A real redis-server (the Debian package) on a free loopback port, for the IN_REDIS tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import redis

from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``start()`` and ``stop()`` a redis-server; it keeps its port across restarts."""

    def __init__(self, directory: Path, *, password: str | None = None, tls: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "the IN_REDIS tests need redis-server: apt-get install -y redis-server "
                "(.ci/run installs it)"
            )
        self.executable = executable
        self.directory = directory
        self.password = password
        self.tls = tls
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            ca = self.directory / "ca.crt"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = [self.executable, "--bind", "127.0.0.1"]
        if self.tls:
            self._make_certificates()
            arguments += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            arguments += ["--tls-cert-file", str(self.directory / "server.crt")]
            arguments += ["--tls-key-file", str(self.directory / "server.key")]
            arguments += ["--tls-ca-cert-file", str(self.directory / "ca.crt")]
        else:
            arguments += ["--port", str(self.port)]
        arguments += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_until(self._answers, timeout=20):
            self.stop()
            raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _make_certificates(self) -> None:
        """A certificate authority of the test's own, and a server certificate for 127.0.0.1."""

        def openssl(*arguments: str) -> None:
            subprocess.run(
                ["openssl", *arguments], cwd=self.directory, check=True, capture_output=True
            )

        if (self.directory / "server.crt").exists():
            return
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=my_cache test CA",
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        )
        (self.directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        )

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None
