"""Many processes, one truth (issue 9, item 1): real `gateway serve` processes.

One `gateway serve --workers 2` and one independent `gateway serve` on another port share
one PostgreSQL database and one Valkey. Every check goes through a `Door`: an HTTP
connection held open to one known worker process (found through `/proc`: the server
side of the connection belongs to exactly one process), so "on every process" means
each of the three workers answered, not that the kernel happened to spread requests.

- a write through one process is fresh on the others' next single read and flushes
  their cached lists (REST and GraphQL);
- a key revocation, a role change and the end of a validity window apply on every
  process's next request (the validity end with no write at all: only the clock moves);
- failed-login limits, challenge attempt counters and retry cooldowns are shared.

The processes start once for the module (PostgreSQL only: SQLite is no multi-host
store). Each test uses users and records of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import valkey

from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, USER_PASSWORD, PostgresServer
from tests.receivers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

API = "/api/v1"
COLLECTIONS = f"{API}/collections"
CURRENT = f"{API}/auth/keys/current"
START_TIMEOUT = 40.0
PHONE = "+420777123456"


# --- processes and doors ----------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    """`root` and every process below it (granian's workers are children of `serve`)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _server_side(port: int, client_port: int) -> str | None:
    """The socket inode of the server's end of 127.0.0.1:client_port -> 127.0.0.1:port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if (
            state == "01"  # ESTABLISHED
            and int(local.rsplit(":", 1)[1], 16) == port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
        ):
            return fields[9]
    return None


def _owner(root: int, port: int, response: httpx.Response) -> int | None:
    """The process (under `root`) that holds the server end of `response`'s connection."""
    stream = response.extensions["network_stream"]
    client_port = stream.get_extra_info("client_addr")[1]
    inode = _server_side(port, client_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in _descendants(root):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) == wanted:
                    return pid
            except OSError:
                continue
    return None


@dataclass
class Door:
    """One kept-alive connection to one worker process; every answer is checked to come
    from that worker."""

    name: str
    root: int
    port: int
    pid: int
    client: httpx.Client

    def request(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert _owner(self.root, self.port, response) == self.pid, f"{self.name} reconnected"
        return response

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.request("GET", path, key, **kwargs)

    def post(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.request("POST", path, key, **kwargs)

    def patch(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.request("PATCH", path, key, **kwargs)

    def delete(self, path: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.request("DELETE", path, key, **kwargs)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass
class Fleet:
    """The running processes, one door per worker, and an admin key."""

    doors: list[Door]
    admin_key: str = ""
    spare: list[httpx.Client] = field(default_factory=list)

    def user(self, login: str, roles: list[str], **fields: Any) -> tuple[int, str]:
        """Create a user through the first door; its id and a fresh key for it."""
        created = self.doors[0].post(
            f"{API}/users",
            self.admin_key,
            json={"login": login, "password": USER_PASSWORD, "roles": roles, **fields},
        )
        assert created.status_code == 201, created.text
        user_id: int = created.json()["id"]
        issued = self.doors[-1].post(
            f"{API}/users/{user_id}/keys", self.admin_key, json={"name": "test"}
        )
        assert issued.status_code == 201, issued.text
        return user_id, issued.json()["key"]


def _start(env: dict[str, str], port: int, workers: int, log: Path) -> Served:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Served(process, port, log)


def _stop(served: Served) -> None:
    if served.process.poll() is None:
        os.killpg(served.process.pid, signal.SIGTERM)
    try:
        served.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait()


def _doors(served: Served, workers: int, name: str, spare: list[httpx.Client]) -> list[Door]:
    """Open connections until one reaches each of the `workers` worker processes."""
    base = f"http://127.0.0.1:{served.port}"
    found: dict[int, Door] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while len(found) < workers:
        if served.process.poll() is not None:
            pytest.fail(f"{name} exited:\n{served.log.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"{name}: {len(found)} of {workers} workers answered"
        client = httpx.Client(base_url=base, timeout=10)
        try:
            response = client.get("/readyz")
        except httpx.TransportError:
            client.close()
            time.sleep(0.1)
            continue
        pid = _owner(served.process.pid, served.port, response)
        if response.status_code != 200 or pid is None or pid in found:
            spare.append(client)  # kept open so that the next connection may go elsewhere
            time.sleep(0.02)
            continue
        found[pid] = Door(f"{name}#{len(found) + 1}", served.process.pid, served.port, pid, client)
    return list(found.values())


@pytest.fixture(scope="module")
def fleet(
    postgres_server: PostgresServer, valkey_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """`gateway serve --workers 2` and a second `gateway serve`, on one database and Valkey."""
    database = "processes"
    postgres_server.server.psql(
        f"DROP DATABASE IF EXISTS {database} WITH (FORCE); CREATE DATABASE {database};"
    )
    with valkey.Valkey.from_url(valkey_server) as client:
        client.flushall()
    base = tmp_path_factory.mktemp("processes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(base / "data"),
        GATEWAY_DATABASE_URL=postgres_server.url(database),
        GATEWAY_VALKEY_URL=valkey_server,
        GATEWAY_ADMIN_LOGIN=ADMIN_LOGIN,
        GATEWAY_ADMIN_PASSWORD=ADMIN_PASSWORD,
        GATEWAY_PASSWORD_PROFILE="test",
        GATEWAY_ACCESS_LOG="false",
    )
    started: list[Served] = []
    spare: list[httpx.Client] = []
    fleet = Fleet(doors=[], spare=spare)
    try:
        # One after the other: the first creates the schema and the admin.
        pooled = _start(env, free_port(), 2, base / "pooled.log")
        started.append(pooled)
        fleet.doors += _doors(pooled, 2, "pooled", spare)
        single = _start(env, free_port(), 1, base / "single.log")
        started.append(single)
        fleet.doors += _doors(single, 1, "single", spare)
        issued = fleet.doors[1].post(
            f"{API}/auth/keys",
            json={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "name": "admin"},
        )
        assert issued.status_code == 201, issued.text
        fleet.admin_key = issued.json()["key"]
        assert len({door.pid for door in fleet.doors}) == 3
        yield fleet
    finally:
        for client in [*spare, *(door.client for door in fleet.doors)]:
            client.close()
        for served in started:
            _stop(served)
        postgres_server.server.psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE);")


def _data(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _names(response: Any) -> list[str]:
    return [row["name"] for row in _data(response)]


# --- (a) writes: fresh single reads, flushed lists --------------------------------------


def test_a_write_through_one_process_is_fresh_on_every_other(fleet: Fleet) -> None:
    doors = fleet.doors
    _, key = fleet.user("fresh.reader", ["integration"])
    created = doors[2].post(f"{COLLECTIONS}/Company", fleet.admin_key, json={"name": "fresh-Alpha"})
    assert created.status_code == 201, created.text
    one = f"{COLLECTIONS}/Company/{created.json()['data']['id']}"
    listing = f"{COLLECTIONS}/Company"
    params = {"_filter": "name ^= 'fresh-'", "_order": "name"}
    graphql = {"query": f"{{ company(id: {created.json()['data']['id']}) {{ name }} }}"}

    # Warm: the first door fills the shared cache, the others hit that same entry.
    seen = []
    for door in doors:
        for _ in range(2):
            single = door.get(one, key)
            assert _data(single)["name"] == "fresh-Alpha"
            listed = door.get(listing, key, params=params)
            assert _names(listed) == ["fresh-Alpha"]
            seen.append((single.headers["x-cache"], listed.headers["x-cache"]))
    assert seen[0] == ("MISS", "MISS")
    assert set(seen[1:]) == {("HIT", "HIT")}

    # Each door in turn writes; every door's next read sees it, single and list alike.
    for number, writer in enumerate(doors):
        name = f"fresh-Alpha-{number}"
        patched = writer.patch(one, key, json={"name": name})
        assert patched.status_code == 200, patched.text
        added = writer.post(f"{COLLECTIONS}/Company", key, json={"name": f"fresh-B{number}"})
        assert added.status_code == 201, added.text
        expected = sorted([name, *(f"fresh-B{n}" for n in range(number + 1))])
        for reader in doors:
            assert _data(reader.get(one, key))["name"] == name, reader.name
            assert _names(reader.get(listing, key, params=params)) == expected, reader.name
            answer = reader.post("/graphql", key, json=graphql)
            assert answer.json() == {"data": {"company": {"name": name}}}, reader.name

    # A delete through one process: gone from every process's next read and list.
    gone = doors[1].delete(one, fleet.admin_key)
    assert gone.status_code == 204, gone.text
    for reader in doors:
        assert reader.get(one, key).status_code == 404, reader.name
        assert "fresh-Alpha-2" not in _names(reader.get(listing, key, params=params))


def test_posted_operations_arrive_whole_under_granian(fleet: Fleet) -> None:
    """The GraphQL edge stops reading a POSTed body at its Content-Length, before granian's
    empty end-of-body message; what it hands on to Litestar (a mutation) and what it
    answers itself (a read) must both work, on one kept-alive connection, with bodies of
    one chunk and of several (granian passes on about 16 KiB at a time)."""
    door = fleet.doors[0]
    read = "query Pick($id: BigInt!) { company(id: $id) { name } }"
    for number, padding in enumerate([0, 40_000, 0, 40_000]):
        comment = f"# {'x' * padding}\n" if padding else ""
        name = f"posted-{number}"
        mutation = f'{comment}mutation {{ createCompany(data: {{name: "{name}"}}) {{ id }} }}'
        created = door.post("/graphql", fleet.admin_key, json={"query": mutation})
        assert created.status_code == 200, created.text
        company_id = created.json()["data"]["createCompany"]["id"]
        variables = {"id": company_id}
        for _ in range(2):  # a miss, then a hit
            found = door.post(
                "/graphql", fleet.admin_key, json={"query": comment + read, "variables": variables}
            )
            assert found.json() == {"data": {"company": {"name": name}}}, found.text


# --- (b) revocation, role change, validity end ------------------------------------------


def _warm(doors: list[Door], key: str, path: str) -> list[Any]:
    """Read `path` through every door twice (the second from the shared cache)."""
    return [_data(door.get(path, key)) for door in doors for _ in range(2)]


def test_revocation_and_role_change_apply_on_every_process_next_request(fleet: Fleet) -> None:
    doors = fleet.doors
    contact = doors[0].post(
        f"{COLLECTIONS}/Contact", fleet.admin_key, json={"full_name": "Jan", "phone": PHONE}
    )
    assert contact.status_code == 201, contact.text
    path = f"{COLLECTIONS}/Contact/{contact.json()['data']['id']}"
    mover_id, key = fleet.user("mover", ["integration"])
    assert all(body["phone"] == PHONE for body in _warm(doors, key, path))
    company = {"name": "by mover"}
    assert doors[1].post(f"{COLLECTIONS}/Company", key, json=company).status_code == 201

    # A role change through the independent process: every worker's next request follows it.
    changed = doors[2].patch(
        f"{API}/users/{mover_id}", fleet.admin_key, json={"roles": ["reporter"]}
    )
    assert changed.status_code == 200, changed.text
    for door in doors:
        body = _data(door.get(path, key))
        assert "phone" not in body, door.name
        assert body["full_name"] == "Jan"
        refused = door.post(f"{COLLECTIONS}/Company", key, json=company)
        assert refused.status_code == 403, (door.name, refused.text)
        assert door.get(CURRENT, key).json()["user"]["roles"] == ["reporter"]

    # A revocation by id through one worker, and the key's own revocation through another.
    other = doors[0].post(f"{API}/users/{mover_id}/keys", fleet.admin_key, json={"name": "2nd"})
    assert other.status_code == 201, other.text
    second_key, second_id = other.json()["key"], other.json()["id"]
    assert _warm(doors, second_key, path)
    revoked = doors[0].delete(f"{API}/auth/keys/{second_id}", fleet.admin_key)
    assert revoked.status_code == 204, revoked.text
    assert doors[1].delete(CURRENT, key).status_code == 204
    for door in doors:
        for each in (key, second_key):
            assert door.get(path, each).status_code == 401, door.name
            assert door.get(CURRENT, each).status_code == 401, door.name


def test_a_validity_end_applies_on_every_process_with_no_write(fleet: Fleet) -> None:
    doors = fleet.doors
    company = doors[0].post(f"{COLLECTIONS}/Company", fleet.admin_key, json={"name": "Temp"})
    path = f"{COLLECTIONS}/Company/{company.json()['data']['id']}"
    user_id, key = fleet.user("temporary", ["integration"])
    # The window ends a few seconds from now; until then every process serves the user
    # (authentication snapshots and the read itself cached in Valkey), after it none does.
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    patched = doors[1].patch(
        f"{API}/users/{user_id}", fleet.admin_key, json={"valid_to": ends.isoformat()}
    )
    assert patched.status_code == 200, patched.text
    for door in doors:
        assert door.get(path, key).status_code == 200, door.name
        assert door.get(CURRENT, key).status_code == 200, door.name
    assert dt.datetime.now(dt.UTC) < ends, "the machine was too slow to warm every process"
    time.sleep((ends - dt.datetime.now(dt.UTC)).total_seconds() + 0.1)
    for door in doors:
        assert door.get(path, key).status_code == 401, door.name
        assert door.get(CURRENT, key).status_code == 401, door.name


# --- (c) shared security counters --------------------------------------------------------


def test_a_login_throttle_tripped_on_one_process_holds_on_all(fleet: Fleet) -> None:
    doors = fleet.doors
    fleet.user("throttled", ["integration"])
    wrong = {"login": "throttled", "password": "not-the-password", "name": "x"}
    for attempt in range(5):  # GATEWAY_LOGIN_MAX_FAILURES, spread over the workers
        door = doors[attempt % len(doors)]
        assert door.post(f"{API}/auth/keys", json=wrong).status_code == 401, door.name
    right = {**wrong, "password": USER_PASSWORD}
    for door in doors:
        locked = door.post(f"{API}/auth/keys", json=right)
        assert locked.status_code == 429, (door.name, locked.text)
        assert int(locked.headers["retry-after"]) > 0


def test_challenge_attempts_and_cooldowns_are_shared(fleet: Fleet) -> None:
    doors = fleet.doors
    _, desk = fleet.user("desk", ["registrar", "integration"])
    registered = doors[0].post(
        f"{API}/auth/register",
        desk,
        json={
            "user": {
                "login": "newcomer",
                "password": USER_PASSWORD,
                "email": "newcomer@example.com",
                "roles": ["integration"],
            },
            "challenge": {"methods": ["email_code"]},
        },
    )
    assert registered.status_code == 201, registered.text
    challenge_id = registered.json()["challenge_id"]

    # The code was just sent: a retry through any process is inside the cooldown.
    for door in doors:
        early = door.post(f"{API}/auth/challenge/retry", desk, json={"challenge_id": challenge_id})
        assert early.status_code == 429, (door.name, early.text)
        assert 0 < int(early.headers["retry-after"]) <= 60

    # Wrong answers spread over the processes draw on one budget of 5 attempts.
    answer = {"challenge_id": challenge_id, "method": "email_code", "code": "000000"}
    for left in range(4, -1, -1):
        door = doors[left % len(doors)]
        wrong = door.post(f"{API}/auth/challenge", desk, json=answer)
        assert wrong.status_code == 422, (door.name, wrong.text)
        message = f"wrong; {left} attempt{'s' if left != 1 else ''} left"
        assert wrong.json()["errors"] == [{"field": "code", "message": message}]
    for door in doors:
        spent = door.post(f"{API}/auth/challenge", desk, json=answer)
        assert spent.status_code == 410, (door.name, spent.text)
