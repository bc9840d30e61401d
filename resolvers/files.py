"""The files of records: upload, download and removal of `file` properties (DESIGN §4).

A file property's column holds `{name, size, content_type, sha256, url}`, exactly what a
record renders; the bytes live in the blob store (`resolvers.blobs`) under their digest.

Rights, checked here for every transport:

- reading needs read on the record (its row scope) and the property not hidden from
  the caller; a hidden property is as absent as an unknown one (404);
- writing and removing need update on the record (its update scope) and the property
  neither hidden (404) nor read-only (403);
- a multipart create needs create, and treats file parts like fields (422 if unknown,
  hidden or read-only).

A refused or failed upload changes nothing: the content is staged and checked first,
then published and referenced in one transaction (see `resolvers.blobs` for the lock
that keeps a concurrent release from deleting it). The blob a write stops referencing
is released after the commit, and deleted if no record holds it any more.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import blobs
from resolvers import collections as records
from resolvers.audit import record_read
from resolvers.errors import (
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
    UnsupportedType,
)
from resolvers.principal import Principal
from resolvers.query_compile import Compiler
from resolvers.services import Services
from resolvers.tenant import SYSTEM_FIELDS, Kind, Property, TypeDef

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "Accepted",
    "StoredFile",
    "Upload",
    "accept_for_create",
    "accepts",
    "create_with_files",
    "delete_file",
    "discard",
    "file_info",
    "file_url",
    "media_type",
    "put_file",
    "read_file",
    "safe_name",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MAX_CONTENT_TYPE = 255
_MAX_NAME = 255
_MEDIA_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_MEDIA_NAME}/{_MEDIA_NAME}")
_CHARSET = re.compile(r';\s*charset="?([A-Za-z0-9_.:-]{1,40})"?\s*(?:;|$)', re.IGNORECASE)
_log = logging.getLogger("gateway.files")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as a transport receives it: its bytes still to come."""

    chunks: AsyncIterable[bytes]
    content_type: str | None = None
    """As sent (parameters are dropped); None: `application/octet-stream`."""
    name: str | None = None
    """As sent; made safe by `safe_name`. None: the property's name."""
    size: int | None = None
    """The announced size (`Content-Length`), if any: too large is refused unread."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file property's value: what the record renders, and where the bytes are."""

    name: str
    size: int
    content_type: str
    sha256: str
    url: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "url": self.url,
        }

    @classmethod
    def from_json(cls, value: object) -> StoredFile | None:
        if not isinstance(value, dict):
            return None
        try:
            found = cls(**{k: value[k] for k in ("name", "size", "content_type", "sha256", "url")})
        except KeyError:
            return None
        return found if blobs.is_digest(found.sha256) and isinstance(found.size, int) else None


@dataclass(frozen=True, slots=True)
class Accepted:
    """An upload staged and checked against its property, not yet published."""

    prop: Property
    staged: blobs.Staged
    name: str
    content_type: str

    def stored(self, type_name: str, record_id: int) -> StoredFile:
        return StoredFile(
            name=self.name,
            size=self.staged.blob.size,
            content_type=self.content_type,
            sha256=self.staged.blob.sha256,
            url=file_url(type_name, record_id, self.prop.name),
        )


def file_url(type_name: str, record_id: int, property_name: str) -> str:
    """Where a file is read back (the REST route; GraphQL's `File.url` is the same)."""
    return f"/api/v1/collections/{type_name}/{record_id}/files/{property_name}"


# --- input values -----------------------------------------------------------------------


def media_type(raw: str | None) -> str:
    """The media type of a `Content-Type` value, lower case, without parameters.

    The allow-list is checked against it; only a `charset` parameter is stored with it.
    """
    if raw is None or not raw.strip():
        return DEFAULT_CONTENT_TYPE
    essence = raw.split(";", 1)[0].strip().lower()
    if len(raw) > _MAX_CONTENT_TYPE or not _MEDIA_TYPE.fullmatch(essence):
        raise Invalid(
            "the content type is not valid",
            [FieldError("Content-Type", "a media type like 'application/pdf'")],
        )
    return essence


def _with_charset(essence: str, raw: str | None) -> str:
    """The type as stored: its essence, and a text's `charset` if one was sent."""
    found = _CHARSET.search(raw or "")
    return f"{essence}; charset={found[1].lower()}" if found else essence


def accepts(prop: Property, content_type: str) -> bool:
    """Whether a file property's allow-list (`content_types`) takes this media type."""
    if not prop.content_types:
        return True
    major = content_type.split("/", 1)[0]
    return content_type in prop.content_types or f"{major}/*" in prop.content_types


def safe_name(raw: str | None, fallback: str) -> str:
    """A file name fit to show and to send back: no path, no control characters, bounded.

    It is only ever metadata: nothing on disk is named after it.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Control, format, surrogate, private-use and unassigned code points all go.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip(" .")
    if len(name) > _MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = f"{stem[: _MAX_NAME - len(extension) - 1]}.{extension}"
        else:
            name = name[:_MAX_NAME]
    return name or fallback


# --- rights -------------------------------------------------------------------------------


def _storage(services: Services) -> blobs.FileStorage:
    if services.files is None:
        raise Unavailable("file storage is not configured")
    return services.files


def _file_property(
    services: Services, principal: Principal, type_name: str, prop_name: str, right: str
) -> tuple[TypeDef, Property]:
    """The type and its file property `prop_name`, if the caller may use it for `right`."""
    type_def = records._type(services, principal, type_name, right)
    rights = principal.on(type_name)
    prop = type_def.properties.get(prop_name)
    if prop is None or not prop.api or prop.kind is not Kind.FILE or prop_name in rights.hidden:
        raise NotFound(f"{type_name} has no file property {prop_name!r}")
    if right != "read" and prop_name in rights.readonly:
        raise Forbidden(f"{prop_name} is read-only for you")
    return type_def, prop


def _create_field(principal: Principal, type_def: TypeDef, name: str) -> Property:
    """A file part of a multipart create, checked like a field of the record."""
    rights = principal.on(type_def.name)
    prop = type_def.properties.get(name)
    reason = None
    if name in SYSTEM_FIELDS:
        reason = "is set by the server"
    elif prop is None or not prop.api or name in rights.hidden:
        reason = "unknown field"
    elif prop.kind is not Kind.FILE:
        reason = "is not a file property: send it in the `data` part"
    elif name in rights.readonly:
        reason = "is read-only for you"
    if prop is None or reason is not None:
        raise Invalid(f"the {type_def.name} is not valid", [FieldError(name, reason or "")])
    return prop


async def _accept(services: Services, prop: Property, upload: Upload) -> Accepted:
    """Check what can be checked before reading, then stage the bytes."""
    storage = _storage(services)
    content_type = media_type(upload.content_type)
    if not accepts(prop, content_type):
        allowed = ", ".join(prop.content_types)
        raise UnsupportedType(
            f"{prop.name} accepts {allowed}, not {content_type}",
            field=prop.name,
            accepted=prop.content_types,
        )
    limit = storage.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise TooLarge(f"the upload is larger than the limit of {limit} bytes", limit=limit)
    try:
        staged = await storage.store.stage(upload.chunks, limit=limit)
    except OSError as exc:
        raise _store_failed(exc) from exc
    stored_type = _with_charset(content_type, upload.content_type)
    return Accepted(prop, staged, safe_name(upload.name, prop.name), stored_type)


async def discard(services: Services, accepted: Iterable[Accepted]) -> None:
    """Remove staged uploads' temporary copies (published blobs stay)."""
    storage = _storage(services)
    for item in accepted:
        await storage.store.discard(item.staged)


# --- writing ------------------------------------------------------------------------------


async def _attach(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_def: TypeDef,
    record_id: int,
    *,
    accepted: Sequence[Accepted],
) -> dict[str, StoredFile]:
    """Publish staged blobs and point the record at them, in `conn`'s transaction."""
    storage = _storage(services)
    await blobs.lock_digests(conn, [a.staged.blob.sha256 for a in accepted])
    try:
        for item in accepted:
            await storage.store.publish(item.staged)
    except OSError as exc:
        raise _store_failed(exc) from exc
    stored = {a.prop.name: a.stored(type_def.name, record_id) for a in accepted}
    table = services.schema.records[type_def.name]
    await conn.execute(
        update(table)
        .where(table.c.id == record_id)
        .values(
            {
                **{name: value.as_json() for name, value in stored.items()},
                "updated_on": services.clock(),
                "updated_by": principal.user_id,
            }
        )
    )
    return stored


async def _current(
    conn: AsyncConnection, services: Services, type_def: TypeDef, prop: Property, record_id: int
) -> StoredFile | None:
    table = services.schema.records[type_def.name]
    value = await conn.scalar(select(table.c[prop.name]).where(table.c.id == record_id))
    return StoredFile.from_json(value)


async def _updatable(
    services: Services, principal: Principal, type_def: TypeDef, record_id: int
) -> None:
    """404/403 before any byte is read: the same checks the transaction repeats."""
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    async with services.engine.connect() as conn:
        await records._writable_row(conn, services, compiler, type_def, record_id, right="update")


async def put_file(
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    prop_name: str,
    *,
    upload: Upload,
) -> StoredFile:
    """Store `upload` as the record's file `prop_name`, replacing any earlier one."""
    type_def, prop = _file_property(services, principal, type_name, prop_name, "update")
    records._check_id(type_name, record_id)
    await _updatable(services, principal, type_def, record_id)
    accepted = await _accept(services, prop, upload)
    digest = accepted.staged.blob.sha256
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    await services.cache.written(type_name, record_id)
    try:
        async with services.writer.begin() as conn:
            await records._writable_row(
                conn, services, compiler, type_def, record_id, right="update"
            )
            old = await _current(conn, services, type_def, prop, record_id)
            stored = await _attach(
                conn, services, principal, type_def, record_id, accepted=[accepted]
            )
    except BaseException:
        await blobs.release(services, [digest])  # published but never referenced
        raise
    finally:
        await discard(services, [accepted])
    await services.cache.written(type_name, record_id)
    if old is not None and old.sha256 != digest:
        await blobs.release(services, [old.sha256])
    return stored[prop.name]


async def delete_file(
    services: Services, principal: Principal, type_name: str, record_id: int, prop_name: str
) -> None:
    """Clear the record's file `prop_name` (404 if it has none)."""
    type_def, prop = _file_property(services, principal, type_name, prop_name, "update")
    records._check_id(type_name, record_id)
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    table = services.schema.records[type_name]
    await services.cache.written(type_name, record_id)
    async with services.writer.begin() as conn:
        await records._writable_row(conn, services, compiler, type_def, record_id, right="update")
        old = await _current(conn, services, type_def, prop, record_id)
        if old is None:
            raise NotFound(f"this {type_name} has no {prop_name}")
        await conn.execute(
            update(table)
            .where(table.c.id == record_id)
            .values(
                {prop.name: null(), "updated_on": services.clock(), "updated_by": principal.user_id}
            )
        )
    await services.cache.written(type_name, record_id)
    await blobs.release(services, [old.sha256])


async def accept_for_create(
    services: Services, principal: Principal, type_name: str, prop_name: str, upload: Upload
) -> Accepted:
    """Stage one file part of a multipart create (discard it if the create does not happen)."""
    type_def = records._type(services, principal, type_name, "create")
    return await _accept(services, _create_field(principal, type_def, prop_name), upload)


async def create_with_files(
    services: Services,
    principal: Principal,
    type_name: str,
    data: Mapping[str, Any],
    accepted: Sequence[Accepted],
) -> dict[str, Any]:
    """Create a record and attach staged files to it, in one transaction.

    Every staged upload is discarded afterwards, whatever happens.
    """
    try:
        type_def = records._type(services, principal, type_name, "create")
        names = [a.prop.name for a in accepted]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise Invalid(
                f"the {type_name} is not valid", [FieldError(n, "sent twice") for n in twice]
            )
        digests = [a.staged.blob.sha256 for a in accepted]
        try:  # `create_in` bumps the cache before it writes; this bumps it after the commit
            async with services.writer.begin() as conn:
                record_id = await records.create_in(conn, services, principal, type_name, data)
                if accepted:
                    await _attach(conn, services, principal, type_def, record_id, accepted=accepted)
        except BaseException:
            await blobs.release(services, digests)
            raise
    finally:
        await discard(services, accepted)
    await services.cache.written(type_name, record_id)
    return await records.readback(services, principal, type_name, record_id)


# --- reading ------------------------------------------------------------------------------


async def file_info(
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    prop_name: str,
    *,
    transport: str = "rest",
) -> StoredFile:
    """The record's file `prop_name` if the caller may read it; 404 if it has none.

    On a type with `read_access_logging` every call writes an audit row.
    """
    type_def, prop = _file_property(services, principal, type_name, prop_name, "read")
    records._check_id(type_name, record_id)
    table = services.schema.records[type_name]
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    query = select(table.c[prop.name]).where(table.c.id == record_id, compiler.read_scope(type_def))
    async with services.engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise NotFound(f"no {type_name} with id {record_id}")
    stored = StoredFile.from_json(row[0])
    if stored is None:
        raise NotFound(f"this {type_name} has no {prop_name}")
    if type_def.read_access_logging:
        await record_read(services, principal, type_name, record_id, transport)
    return stored


async def read_file(
    services: Services, stored: StoredFile, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """The bytes `start` to `end` (exclusive) of a file `file_info` returned, opened now."""
    storage = _storage(services)
    try:
        return await storage.store.open(stored.sha256, start, end)
    except blobs.BlobMissing:
        _log.error("the content of file %s is missing from the store", stored.sha256)
        raise NotFound("the file's content is missing; it may have just been replaced") from None
    except OSError as exc:
        raise _store_failed(exc) from exc


def _store_failed(exc: OSError) -> Unavailable:
    """The blob store cannot work now (disk full, permissions): 503, and logged."""
    _log.error("the file store failed: %s", exc)
    return Unavailable("the file store cannot serve this now", retry_after=30)
