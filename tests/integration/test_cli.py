"""The `gateway` command as a user runs it: real processes, real ports, real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import valkey

from tests.conftest import TENANTS, PostgresServer

pytestmark = pytest.mark.slow

GATEWAY = [sys.executable, "-m", "gateway"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_TENANT_FILE=str(TENANTS / "library.toml"),
        GATEWAY_ADMIN_LOGIN="head.librarian",
        GATEWAY_ADMIN_PASSWORD="correct horse battery staple",
        GATEWAY_PASSWORD_PROFILE="test",
    )
    env.update(extra)
    return env


@dataclass
class Served:
    process: subprocess.Popen[str]
    healthy_after: float = 0.0
    output: str = ""
    returncode: int | None = None


@contextmanager
def serving(env: dict[str, str], port: int) -> Iterator[Served]:
    """Start `gateway serve`, wait for /healthz, yield it; on exit SIGTERM and collect output."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*GATEWAY, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(process)
    try:
        served.healthy_after = _wait_healthy(process, port, started)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            served.output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            served.output, _ = process.communicate()
        served.returncode = process.returncode


def _wait_healthy(process: subprocess.Popen[str], port: int, started: float) -> float:
    deadline = started + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("gateway did not become healthy within 30 s")


def _valkey_listening(output: str) -> int | None:
    for line in output.splitlines():
        if "embedded Valkey started at" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def _process_ended(pid: int, within: float = 5.0) -> bool:
    """Whether process `pid` is gone (or a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_serve_on_the_embedded_default_with_an_unseen_tenant(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(tmp_path / "data")
    with serving(env, port) as served:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "valkey": "ok"}}
        openapi = httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=5).json()
        assert openapi["info"]["title"] == "Jetstack Gateway — City Library"
        embedded_url = (tmp_path / "data" / "embedded-valkey.url").read_text()
        with valkey.Valkey.from_url(embedded_url) as client:
            valkey_pid = int(client.info("server")["process_id"])
    output = served.output
    assert served.returncode == 0, output
    assert served.healthy_after < 10, served.healthy_after  # the README states the measured figure
    assert "Created the admin user 'head.librarian'" in output
    assert "password:" not in output  # a configured password is never printed
    assert (tmp_path / "data" / "gateway.db").exists()
    valkey_port = _valkey_listening(output)
    assert valkey_port is not None, output
    assert embedded_url.endswith(f":{valkey_port}")
    # The embedded Valkey stopped with the gateway. Its process is asked, not its port:
    # another test's Valkey may take the port as soon as it is free.
    assert _process_ended(valkey_pid)

    listed = subprocess.run(
        [*GATEWAY, "user", "list"], env=env, capture_output=True, text=True, check=True
    )
    assert "head.librarian" in listed.stdout
    assert "roles=admin" in listed.stdout


def test_a_generated_admin_password_is_printed_once(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    del env["GATEWAY_ADMIN_PASSWORD"]
    first = subprocess.run([*GATEWAY, "init"], env=env, capture_output=True, text=True, check=True)
    assert "password: " in first.stdout
    second = subprocess.run([*GATEWAY, "init"], env=env, capture_output=True, text=True, check=True)
    assert "password" not in second.stdout


@pytest.mark.postgres
def test_serve_on_postgresql_and_an_external_valkey(
    tmp_path: Path, postgres_server: PostgresServer, cache_url: str
) -> None:
    database = "cli_serve"
    postgres_server.server.psql(
        f"DROP DATABASE IF EXISTS {database} WITH (FORCE); CREATE DATABASE {database};"
    )
    port = _free_port()
    env = _env(
        tmp_path / "data",
        GATEWAY_DATABASE_URL=postgres_server.url(database),
        GATEWAY_VALKEY_URL=cache_url,
    )
    with serving(env, port) as served:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    assert served.returncode == 0, served.output
    assert "embedded Valkey" not in served.output
    assert not (tmp_path / "data" / "gateway.db").exists()


def test_migrate_prints_its_plan_and_refuses_destruction(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    dry = subprocess.run(
        [*GATEWAY, "migrate", "--dry-run"], env=env, capture_output=True, text=True, check=True
    )
    assert "+ create table c_book" in dry.stdout
    applied = subprocess.run(
        [*GATEWAY, "migrate"], env=env, capture_output=True, text=True, check=True
    )
    assert "Applied" in applied.stdout
    again = subprocess.run(
        [*GATEWAY, "migrate"], env=env, capture_output=True, text=True, check=True
    )
    assert again.stdout.strip() == "nothing to do"

    shrunk = tmp_path / "shrunk.toml"
    shrunk.write_text(
        (TENANTS / "library.toml").read_text().replace('born = { kind = "date" }\n', "")
    )
    env["GATEWAY_TENANT_FILE"] = str(shrunk)
    refused = subprocess.run(
        [*GATEWAY, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "- drop column c_author.born" in refused.stderr
    assert "--allow-destructive" in refused.stderr
    allowed = subprocess.run(
        [*GATEWAY, "migrate", "--allow-destructive"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "- drop column c_author.born" in allowed.stdout


def test_a_broken_tenant_file_is_refused_with_every_problem(tmp_path: Path) -> None:
    env = _env(
        tmp_path / "data", GATEWAY_TENANT_FILE=str(TENANTS / "broken" / "several_problems.toml")
    )
    result = subprocess.run(
        [*GATEWAY, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "the tenant file is refused" in result.stderr
    assert result.stderr.count("several_problems.toml:") >= 2


def test_malformed_settings_are_named(tmp_path: Path) -> None:
    env = _env(tmp_path / "data", GATEWAY_DB_POOL_SIZE="many", GATEWAY_AUTO_MIGRATE="maybe")
    result = subprocess.run(
        [*GATEWAY, "init"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "GATEWAY_DB_POOL_SIZE='many'" in result.stderr
    assert "GATEWAY_AUTO_MIGRATE='maybe'" in result.stderr
