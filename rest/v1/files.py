"""`/api/v1/collections/{T}/{id}/files/{property}`: upload, download and remove files.

One route per file property, so OpenAPI names each. The handlers translate HTTP into
`resolvers.files` calls and back:

- `PUT` takes the raw body (its `Content-Type` is the file's, `?name=` its name) or a
  `multipart/form-data` body of exactly one part (the part's `Content-Type` and file
  name). Either way the body is streamed into storage, never held in memory.
- `GET` streams the file with `Content-Type`, `Content-Length`, a strong `ETag` (the
  quoted SHA-256), `Content-Disposition: attachment` with a safe name, `Accept-Ranges`;
  `If-None-Match` gives 304, a single `Range: bytes=a-b` 206 with `Content-Range` (416
  when no byte of it exists). Several ranges, or a malformed or stale (`If-Range`)
  one, get the whole file with 200, as RFC 9110 allows.
- `DELETE` removes the file: 204.

`create_multipart` serves `POST /collections/{T}` with `multipart/form-data` (a `data`
part holding the record's JSON, one part per file property), before Litestar would
read the body as JSON.
"""

# No `from __future__ import annotations`: Litestar reads the handlers' annotations at
# runtime, and they name objects local to `_router`.
import dataclasses
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, delete, get, put
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream
from multipart import (  # type: ignore[import-untyped]  # no type information shipped
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
)

from resolvers import files
from resolvers.errors import FieldError, Invalid, TooLarge
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.storage import MAX_ID
from resolvers.tenant import Kind, Property, Tenant, TypeDef
from rest.caching import not_modified
from rest.errors import problem
from rest.openapi import Ref, problems
from rest.v1.security import caller

__all__ = ["create_hook", "create_multipart", "create_operation", "file_routers"]

_MULTIPART = "multipart/form-data"
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around one uploaded file
_MAX_DATA_PART = 4 * 1024 * 1024  # the `data` part of a multipart create: a record's JSON
_MAX_NAME_PARAMETER = 1000
_CACHE_CONTROL = "private, no-cache"
_RANGE = re.compile(r"\s*(\d{0,19})\s*-\s*(\d{0,19})\s*")


# --- documentation ----------------------------------------------------------------------


def _binary(_ref: Ref) -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def _file_one(_ref: Ref) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={"data": _ref(_file_info_model())},
        required=["data"],
        additional_properties=False,
    )


def _file_info_model() -> type:
    from rest.v1.collections import FileInfo  # noqa: PLC0415 - collections imports this module

    return FileInfo


class FileContent:
    """The bytes of a stored file, in its own content type."""

    __jgw_openapi__ = staticmethod(_binary)


class FileOne:
    __jgw_openapi__ = staticmethod(_file_one)


_FILE_HEADERS = [
    ResponseHeader(
        name="ETag",
        value='"<sha256>"',
        documentation_only=True,
        description="The quoted SHA-256 of the content (strong).",
    ),
    ResponseHeader(
        name="Content-Disposition",
        value="attachment",
        documentation_only=True,
        description="`attachment; filename=\"...\"; filename*=UTF-8''...` with a safe name.",
    ),
    ResponseHeader(
        name="Accept-Ranges", value="bytes", documentation_only=True, description="bytes"
    ),
    ResponseHeader(
        name="X-Content-Type-Options",
        value="nosniff",
        documentation_only=True,
        description="nosniff",
    ),
]
_DOWNLOAD_RESPONSES = {
    200: ResponseSpec(
        data_container=FileContent,
        media_type="*/*",
        generate_examples=False,
        description="The whole file, in its stored content type.",
    ),
    206: ResponseSpec(
        data_container=FileContent,
        media_type="*/*",
        generate_examples=False,
        description="The requested byte range; `Content-Range` says which.",
    ),
    304: ResponseSpec(
        data_container=None,
        description="Not modified: `If-None-Match` names the current ETag (empty body).",
    ),
    **problems(400, 401, 403, 404, 416, 503),
}


def _upload_operation(prop: Property) -> type[Operation]:
    """Document the upload body the handler reads itself (raw, or one multipart part)."""
    raw_types = list(prop.content_types) or ["application/octet-stream"]
    binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
    accepted = (
        f"Only {', '.join(prop.content_types)} (415 otherwise)."
        if prop.content_types
        else "Any content type: the `Content-Type` sent is the one stored and served back."
    )
    body = RequestBody(
        required=True,
        description=f"The file itself, at most `GATEWAY_MAX_UPLOAD_BYTES`. {accepted} "
        "Or `multipart/form-data` with exactly one part: its file name and content type "
        "are kept.",
        content={
            **{media: OpenAPIMediaType(schema=binary) for media in raw_types},
            _MULTIPART: OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={"file": binary},
                    required=["file"],
                )
            ),
        },
    )

    @dataclasses.dataclass
    class _Upload(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return _Upload


def create_operation(type_def: TypeDef) -> type[Operation]:
    """A create operation whose body may also be `multipart/form-data` (`create_hook`)."""
    form = _multipart_body(type_def)

    @dataclasses.dataclass
    class _Create(Operation):
        def __post_init__(self) -> None:
            if isinstance(self.request_body, RequestBody):
                self.request_body.content[_MULTIPART] = form

    return _Create


def _multipart_body(type_def: TypeDef) -> OpenAPIMediaType:
    """The `multipart/form-data` alternative of a create body, for OpenAPI."""
    properties: dict[str, Any] = {
        "data": Schema(
            type=OpenAPIType.STRING,
            description=f"The {type_def.name} as JSON, exactly as the JSON body would be.",
            content_media_type="application/json",
        )
    }
    for prop in type_def.properties.values():
        if prop.api and prop.kind is Kind.FILE:
            properties[prop.name] = Schema(
                type=OpenAPIType.STRING,
                format=OpenAPIFormat.BINARY,
                description="The file; the part's file name and content type are kept.",
            )
    return OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.OBJECT,
            properties=properties,
            description="A `data` part with the record's JSON, and a part per file.",
        )
    )


# --- request bodies -----------------------------------------------------------------------


async def _streamed(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    """The body through Litestar's `stream()` (which enforces the route's body limit)."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except RequestEntityTooLarge:
        raise TooLarge(f"the upload is larger than the limit of {limit} bytes", limit) from None
    except InternalServerException:  # Litestar's word for a client that went away
        raise ClientException("the upload was interrupted") from None


async def _received(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The body straight from ASGI: the create route's body limit is for JSON, not files."""
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientException("the upload was interrupted")
        if message["body"]:
            yield message["body"]
        if not message.get("more_body", False):
            return


class _Form:
    """A `multipart/form-data` body, read part by part as it arrives.

    Each part's body must be read to its end (`body`) before the next part is asked for.
    """

    _END = object()

    def __init__(self, chunks: AsyncIterator[bytes], boundary: str, *, parts: int) -> None:
        try:
            self._parser = PushMultipartParser(boundary, max_segment_count=parts)
        except ParserError:
            raise ClientException("the multipart boundary is not valid") from None
        self._chunks = chunks
        self._events: deque[object] = deque()

    async def _event(self) -> object:
        while not self._events:
            if self._parser.closed:
                return self._END
            chunk = await anext(self._chunks, b"")
            try:
                self._events.extend(
                    bytes(e) if isinstance(e, bytes | bytearray | memoryview) else e
                    for e in self._parser.parse(chunk)
                )
            except ParserLimitReached:
                raise Invalid(
                    "the form is not valid", [FieldError("body", "too many parts or headers")]
                ) from None
            except ParserError as exc:
                raise ClientException(f"the multipart body is malformed: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> MultipartSegment | None:
        event = await self._event()
        if event is self._END:
            return None
        if not isinstance(event, MultipartSegment):
            raise ClientException("the multipart body is malformed")
        return event

    async def body(self) -> AsyncIterator[bytes]:
        while (event := await self._event()) is not None:
            if not isinstance(event, bytes):
                raise ClientException("the multipart body is malformed")
            yield event

    async def read(self, limit: int, field: str) -> bytes:
        data = bytearray()
        async for chunk in self.body():
            data += chunk
            if len(data) > limit:
                raise Invalid("the form is not valid", [FieldError(field, f"over {limit} bytes")])
        return bytes(data)


def _boundary(request: Request[Any, Any, Any]) -> str | None:
    """The boundary if the body is `multipart/form-data`, else None."""
    media, options = request.content_type
    if media != _MULTIPART:
        return None
    boundary = options.get("boundary")
    if not boundary:
        raise ClientException("multipart/form-data needs a boundary")
    return boundary


async def _one_part(form: _Form) -> tuple[MultipartSegment, AsyncIterator[bytes]]:
    first = await form.next_part()
    if first is None:
        raise Invalid("the form is not valid", [FieldError("body", "send exactly one part")])

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in form.body():
            yield chunk
        if await form.next_part() is not None:
            raise Invalid("the form is not valid", [FieldError("body", "send exactly one part")])

    return first, chunks()


def _declared_size(request: Request[Any, Any, Any]) -> int | None:
    try:
        return request.content_length
    except ClientException:
        return None


# --- multipart create -----------------------------------------------------------------------


def create_hook(type_name: str) -> Callable[[Request[Any, Any, Any]], Awaitable[Any]]:
    """A create route's `before_request`: answers `multipart/form-data` bodies itself.

    Litestar would read the whole body as the handler's JSON `data`; a form with files
    must be streamed instead, so it is handled before the handler's parameters are
    resolved (the returned record is then rendered like the handler's own). The hook
    of an outer layer (the API's key-in-URL refusal) runs first, as it would otherwise.
    """

    async def hook(request: Request[Any, Any, Any]) -> Any:
        layers = request.route_handler.ownership_layers[:-1]
        outer = [layer.before_request for layer in layers if layer.before_request]
        if outer and (answer := await outer[-1](request)) is not None:
            return answer
        if _boundary(request) is None:
            return None
        services: Services = request.app.state.services
        return await create_multipart(request, services, await caller(), type_name)

    return hook


async def create_multipart(
    request: Request[Any, Any, Any], services: Services, principal: Principal, type_name: str
) -> dict[str, Any]:
    """`POST /collections/{T}` with a form: a `data` part (JSON) and a part per file."""
    boundary = _boundary(request)
    if boundary is None:  # pragma: no cover - the caller checked
        raise ClientException("expected multipart/form-data")
    type_def = services.tenant.types[type_name]
    file_count = sum(1 for p in type_def.properties.values() if p.kind is Kind.FILE)
    form = _Form(_received(request), boundary, parts=2 + file_count)
    data: Any = None
    accepted: list[files.Accepted] = []
    try:
        while (part := await form.next_part()) is not None:
            name = part.name or ""
            if name == "data":
                data = await _data_part(form, sent=data is not None)
                continue
            upload = files.Upload(form.body(), part.content_type, part.filename)
            accepted.append(
                await files.accept_for_create(services, principal, type_name, name, upload)
            )
    except BaseException:
        await files.discard(services, accepted)
        raise
    record = await files.create_with_files(services, principal, type_name, data or {}, accepted)
    return {"data": record}


async def _data_part(form: _Form, *, sent: bool) -> dict[str, Any]:
    if sent:
        raise Invalid("the form is not valid", [FieldError("data", "sent twice")])
    return _record_json(await form.read(_MAX_DATA_PART, "data"))


def _record_json(raw: bytes) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise Invalid("the form is not valid", [FieldError("data", "not valid JSON")]) from None
    if not isinstance(value, dict):
        raise Invalid("the form is not valid", [FieldError("data", "expected a JSON object")])
    return value


# --- routes -----------------------------------------------------------------------------


def file_routers(tenant: Tenant, *, max_upload_bytes: int) -> list[Router]:
    """The file routes of every API type with file properties."""
    return [
        router
        for type_def in tenant.api_types()
        if (router := _router(type_def, max_upload_bytes)) is not None
    ]


def _router(type_def: TypeDef, max_upload_bytes: int) -> Router | None:
    handlers = [
        handler
        for prop in type_def.properties.values()
        if prop.api and prop.kind is Kind.FILE
        for handler in _handlers(type_def.name, prop, max_upload_bytes)
    ]
    if not handlers:
        return None
    return Router(
        path=f"/collections/{type_def.name}", tags=[type_def.name], route_handlers=handlers
    )


_RecordId = Annotated[int, PathParameter(gt=0, le=MAX_ID)]
_Name = Annotated[
    str | None,
    QueryParameter(
        max_length=_MAX_NAME_PARAMETER,
        description="The file's name for a raw body (a multipart part's own file name wins).",
    ),
]


def _handlers(type_name: str, prop: Property, max_upload_bytes: int) -> list[Any]:
    path = f"/{{record_id:int}}/files/{prop.name}"
    what = f"the {prop.name} of a {type_name}"

    async def upload(
        request: Request[Any, Any, Any],
        record_id: _RecordId,
        services: NamedDependency[Services],
        name: _Name = None,
    ) -> FileOne:
        """Store the request body as this file, replacing any earlier one."""
        principal = await caller()
        stored = await files.put_file(
            services,
            principal,
            type_name,
            record_id,
            prop.name,
            upload=await _upload_of(request, name, max_upload_bytes),
        )
        return {"data": stored.as_json()}  # type: ignore[return-value]  # documented as FileOne

    async def download(
        request: Request[Any, Any, Any],
        record_id: _RecordId,
        services: NamedDependency[Services],
    ) -> Response[Any]:
        """Stream this file (whole, or one byte range)."""
        principal = await caller()
        stored = await files.file_info(services, principal, type_name, record_id, prop.name)
        return await _file_response(request, services, stored)

    async def remove(
        record_id: _RecordId,
        services: NamedDependency[Services],
    ) -> None:
        """Remove this file; the record stays."""
        principal = await caller()
        await files.delete_file(services, principal, type_name, record_id, prop.name)

    return [
        put(
            path,
            name=f"upload{type_name}{_pascal(prop.name)}",
            summary=f"Upload {what}",
            status_code=200,
            request_max_body_size=max_upload_bytes + _MULTIPART_OVERHEAD,
            operation_class=_upload_operation(prop),
            responses=problems(400, 401, 403, 404, 413, 415, 422, 503),
        )(upload),
        get(
            path,
            name=f"download{type_name}{_pascal(prop.name)}",
            summary=f"Download {what}",
            responses=_DOWNLOAD_RESPONSES,
            response_headers=_FILE_HEADERS,
        )(download),
        delete(
            path,
            name=f"delete{type_name}{_pascal(prop.name)}",
            summary=f"Remove {what}",
            responses=problems(400, 401, 403, 404),
        )(remove),
    ]


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


async def _upload_of(
    request: Request[Any, Any, Any], name: str | None, max_upload_bytes: int
) -> files.Upload:
    boundary = _boundary(request)
    if boundary is None:
        return files.Upload(
            _streamed(request, max_upload_bytes),
            content_type=request.headers.get("content-type"),
            name=name,
            size=_declared_size(request),
        )
    form = _Form(_streamed(request, max_upload_bytes), boundary, parts=1)
    part, chunks = await _one_part(form)
    return files.Upload(chunks, content_type=part.content_type, name=part.filename or name)


# --- responses ----------------------------------------------------------------------------


async def _file_response(
    request: Request[Any, Any, Any], services: Services, stored: files.StoredFile
) -> Response[Any]:
    etag = f'"{stored.sha256}"'
    headers = {
        "Content-Type": stored.content_type,  # as stored: Litestar would add a charset
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": _CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": _disposition(stored.name),
    }
    if not_modified(request, etag):
        return Response(content=b"", status_code=304, headers=headers)
    span = _byte_range(request, stored.size, etag)
    if span is _UNSATISFIABLE:
        return problem(
            416,
            "Range not satisfiable",
            f"the file has {stored.size} bytes",
            code="range_not_satisfiable",
            headers={"Content-Range": f"bytes */{stored.size}"},
        )
    start, end = span if isinstance(span, tuple) else (0, stored.size)
    chunks = await files.read_file(services, stored, start, end)
    headers["Content-Length"] = str(end - start)
    status = 200
    if isinstance(span, tuple):
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
        status = 206
    return Stream(chunks, media_type=stored.content_type, headers=headers, status_code=status)


def _disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one in RFC 5987 form."""
    fallback = (
        "".join(ch if " " <= ch <= "~" and ch not in '"\\;' else "_" for ch in name).strip()
        or "file"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


_UNSATISFIABLE = object()


def _byte_range(
    request: Request[Any, Any, Any], size: int, etag: str
) -> tuple[int, int] | object | None:
    """The one range asked for as (start, end exclusive); None for the whole file."""
    header = request.headers.get("range")
    if header is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None  # the client's copy is of another version: send it all
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # another unit, or several ranges: the whole file (RFC 9110 §14.2)
    match = _RANGE.fullmatch(spec)
    if match is None or not (match[1] or match[2]):
        return None  # malformed: ignored, as RFC 9110 allows
    first, last = match[1], match[2]
    if not first:  # the last `last` bytes
        length = int(last)
        if length == 0 or size == 0:
            return _UNSATISFIABLE
        return max(0, size - length), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return _UNSATISFIABLE
    end = size if not last else min(int(last) + 1, size)
    return start, end
