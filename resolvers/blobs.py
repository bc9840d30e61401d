"""Content-addressed file storage: blobs named by their SHA-256, and who still needs them.

`BlobStore` is the small interface a backend implements (`LocalBlobStore` keeps blobs in
a directory; an object store fits the same five calls). An upload is *staged* first
(streamed to a temporary object while it is hashed and counted, aborted past the size
limit), then *published* under its digest inside the database transaction that makes a
record point at it. Names on disk come from digests only, never from a client.

Orphans: a blob is deleted once no file column of any type names its digest. The check
and the delete run in a write transaction holding a per-digest lock, and an upload
publishes its blob and commits its reference while holding the same lock, so a
concurrent upload of the same content can never lose the blob it has just taken: either
the release runs first (the blob is gone, the upload publishes its own staged copy
again) or the upload commits first (the release sees its reference and keeps the blob).
The lock is `pg_advisory_xact_lock` on PostgreSQL; on SQLite every write transaction
already holds the database's single write lock (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers.errors import TooLarge
from resolvers.tenant import Kind, TypeDef

if TYPE_CHECKING:
    from resolvers.services import Services

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Blob",
    "BlobMissing",
    "BlobStore",
    "FileStorage",
    "LocalBlobStore",
    "Staged",
    "held",
    "is_digest",
    "local_file_storage",
    "lock_digests",
    "referenced",
    "release",
]

DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_WRITE_BUFFER = 1024 * 1024  # bytes gathered before one write (and hash) off the event loop
_READ_CHUNK = 256 * 1024
_STALE_TEMP = 24 * 3600  # seconds after which a temporary file is a crash's leftover
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LOCK_CLASS = 0x4A47_5746  # "JGWF": the gateway's namespace of PostgreSQL advisory locks
_log = logging.getLogger("gateway.files")


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Staged:
    """Content received and hashed but not yet published; `token` is the store's own handle."""

    blob: Blob
    token: str


class BlobMissing(Exception):
    """A digest the database names has no content in the store."""


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


class BlobStore(Protocol):
    """Where file contents live. Every method is safe to call concurrently."""

    async def stage(self, chunks: AsyncIterable[bytes], *, limit: int) -> Staged:
        """Consume `chunks` into a temporary object, hashing as it goes.

        Raises `TooLarge` (having removed what it wrote) as soon as more than `limit`
        bytes arrive; any other failure also leaves nothing behind.
        """
        ...

    async def publish(self, staged: Staged) -> None:
        """Make staged content readable under its digest (a no-op if it already is)."""
        ...

    async def discard(self, staged: Staged) -> None:
        """Forget a staged upload's temporary object (after `publish`, or instead of it)."""
        ...

    async def open(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes `start` to `end` (exclusive; None: to the end) of a blob.

        The blob is opened before this returns, so a later delete does not cut the read
        short; `BlobMissing` if there is no such blob.
        """
        ...

    async def delete(self, sha256: str) -> None:
        """Remove a blob; no error if it is already gone."""
        ...

    async def exists(self, sha256: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class FileStorage:
    """The file store the resolvers use and the largest upload they accept."""

    store: BlobStore
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


# --- a local directory ------------------------------------------------------------------


class LocalBlobStore:
    """Blobs under `root` as `ab/cd/<sha256>`; uploads staged in `root/tmp` (same filesystem).

    Publishing is an fsynced file renamed into place, then the directory fsynced: a
    crash leaves either no blob or the whole blob, never a torn one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def path(self, sha256: str) -> Path:
        if not is_digest(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def prepare(self) -> None:
        """Create the directories and remove temporary files a crash left behind."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - _STALE_TEMP
        for leftover in self._tmp.glob("*.part"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except FileNotFoundError:
                continue

    async def stage(self, chunks: AsyncIterable[bytes], *, limit: int) -> Staged:
        handle = await asyncio.to_thread(self._temporary)
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                _within(size, limit)
                pending += chunk
                if len(pending) >= _WRITE_BUFFER:
                    block, pending = bytes(pending), bytearray()
                    await asyncio.to_thread(_write, handle, digest, block)
            if pending:
                await asyncio.to_thread(_write, handle, digest, bytes(pending))
            await asyncio.to_thread(_finish, handle)
        except BaseException:
            await asyncio.to_thread(_abandon, handle)
            raise
        return Staged(Blob(digest.hexdigest(), size), handle.name)

    def _temporary(self) -> IO[bytes]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        path = self._tmp / f"{secrets.token_hex(16)}.part"
        return path.open("xb")

    async def publish(self, staged: Staged) -> None:
        await asyncio.to_thread(self._publish, staged)

    def _publish(self, staged: Staged) -> None:
        final = self.path(staged.blob.sha256)
        if final.exists():
            return
        temporary = self._staged_path(staged)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A hard link keeps the staged file, so a retry after a failed transaction (or a
        # release that raced this upload) can publish the same content again.
        try:
            os.link(temporary, final)
        except FileExistsError:
            return
        _fsync_directory(final.parent)

    async def discard(self, staged: Staged) -> None:
        await asyncio.to_thread(self._staged_path(staged).unlink, missing_ok=True)

    def _staged_path(self, staged: Staged) -> Path:
        path = Path(staged.token)
        if path.parent != self._tmp or not path.name.endswith(".part"):
            raise ValueError("not a staged upload of this store")
        return path

    async def open(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path(sha256).open, "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        return _read(handle, start, end)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.path(sha256).unlink, missing_ok=True)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).exists)


async def local_file_storage(root: Path, max_upload_bytes: int) -> FileStorage:
    """A `LocalBlobStore` at `root`, its directories made and a crash's leftovers removed."""
    store = LocalBlobStore(root)
    await asyncio.to_thread(store.prepare)
    return FileStorage(store, max_upload_bytes=max_upload_bytes)


def _within(size: int, limit: int) -> None:
    if size > limit:
        raise TooLarge(f"the upload is larger than the limit of {limit} bytes", limit=limit)


def _write(handle: IO[bytes], digest: hashlib._Hash, block: bytes) -> None:
    digest.update(block)
    handle.write(block)


def _finish(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _abandon(handle: IO[bytes]) -> None:
    handle.close()
    Path(handle.name).unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def _read(handle: IO[bytes], start: int, end: int | None) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(handle.seek, start)
        left = None if end is None else max(0, end - start)
        while left is None or left > 0:
            size = _READ_CHUNK if left is None else min(_READ_CHUNK, left)
            block = await asyncio.to_thread(handle.read, size)
            if not block:
                return
            if left is not None:
                left -= len(block)
            yield block
    finally:
        handle.close()


# --- references and orphans --------------------------------------------------------------


def _file_columns(services: Services) -> Iterable[tuple[TypeDef, str]]:
    for type_def in services.tenant.types.values():
        for prop in type_def.properties.values():
            if prop.kind is Kind.FILE:
                yield type_def, prop.name


async def lock_digests(conn: AsyncConnection, digests: Iterable[str]) -> None:
    """Hold each digest's lock until `conn`'s transaction ends (in a fixed order: no deadlock).

    SQLite needs nothing: a write transaction there already excludes every other writer.
    """
    if conn.dialect.name != "postgresql":
        return
    for digest in sorted(set(digests)):
        key = int.from_bytes(bytes.fromhex(digest[:8]), "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, key)))


async def referenced(conn: AsyncConnection, services: Services, sha256: str) -> bool:
    """Whether any record of any type holds this digest in a file column."""
    for type_def, name in _file_columns(services):
        column = services.schema.records[type_def.name].c[name]
        query = select(column.isnot(None)).where(column["sha256"].as_string() == sha256).limit(1)
        if await conn.scalar(query) is not None:
            return True
    return False


async def held(
    conn: AsyncConnection, services: Services, type_def: TypeDef, record_id: int
) -> list[str]:
    """The digests one record's file columns hold (read before the record is deleted)."""
    table = services.schema.records[type_def.name]
    names = [p.name for p in type_def.properties.values() if p.kind is Kind.FILE]
    if not names:
        return []
    query = select(*(table.c[n] for n in names)).where(table.c.id == record_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # a file written meanwhile is not missed
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return []
    return [v["sha256"] for v in row if isinstance(v, dict) and is_digest(v.get("sha256"))]


async def release(services: Services, digests: Iterable[str]) -> None:
    """Delete the blobs of `digests` that no record references any more.

    Called after the transaction that dropped a reference has committed. A failure is
    logged, not raised: the write it follows has succeeded, and an orphan costs only space.
    """
    storage = services.files
    wanted = sorted({d for d in digests if is_digest(d)})
    if storage is None or not wanted:
        return
    for digest in wanted:
        try:
            async with services.writer.begin() as conn:
                await lock_digests(conn, [digest])
                if not await referenced(conn, services, digest):
                    await storage.store.delete(digest)
        except Exception:  # noqa: BLE001 - see the docstring: never fail a committed write
            _log.exception("could not release blob %s", digest)
