"""Files of records (issue 8): upload, stream back, ranges, limits, rights and orphans.

Every test runs on SQLite and PostgreSQL, on the `files.toml` tenant, with an upload
limit of 256 KiB so the 413 path is cheap to reach. The blob store is a real directory;
tests look at it to check that blobs come and go as records reference them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import socket
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.settings import FileSettings, Settings
from resolvers.blobs import LocalBlobStore
from tests.conftest import TENANTS, Api, Backend, make_settings

LIMIT = 256 * 1024
FOLDERS = "/api/v1/collections/Folder"
PHOTOS = "/api/v1/collections/Photo"


@pytest.fixture
def settings(backend: Backend, cache_url: str, tmp_path: Path) -> Settings:
    """The files tenant, with a small upload limit (overrides conftest's `settings`)."""
    base = make_settings(backend, cache_url, tmp_path / "data", TENANTS / "files.toml")
    files = FileSettings(directory=tmp_path / "blobs", max_upload_bytes=LIMIT)
    return dataclasses.replace(base, files=files)


def _store(api: Api) -> LocalBlobStore:
    directory = api.settings.files.directory
    assert directory is not None
    return LocalBlobStore(directory)


def _blob(api: Api, digest: str) -> Path:
    return _store(api).path(digest)


def _leftovers(api: Api) -> list[Path]:
    """Staged uploads still on disk (every request must clean up after itself)."""
    return list((_store(api).root / "tmp").glob("*.part"))


async def _folder(api: Api, key: str | None = None, **fields: Any) -> int:
    response = await api.client.post(
        FOLDERS, json={"title": "F", **fields}, headers=api.auth(key or api.admin_key)
    )
    assert response.status_code == 201, response.text
    record_id: int = response.json()["data"]["id"]
    return record_id


async def _put(
    api: Api,
    url: str,
    content: bytes,
    *,
    key: str | None = None,
    content_type: str = "application/octet-stream",
    name: str | None = None,
) -> httpx.Response:
    headers = {**api.auth(key or api.admin_key), "Content-Type": content_type}
    params = {"name": name} if name is not None else None
    return await api.client.put(url, content=content, headers=headers, params=params)


async def _get(api: Api, url: str, key: str | None = None, **headers: str) -> httpx.Response:
    return await api.client.get(url, headers={**api.auth(key or api.admin_key), **headers})


async def _user_key(api: Api, login: str, role: str) -> str:
    await api.create_user(login, roles=[role])
    return await api.login(login)


# --- round trip -------------------------------------------------------------------------


async def test_random_binary_round_trip(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    content = secrets.token_bytes(100_000) + b"\x00\xff" * 10
    digest = hashlib.sha256(content).hexdigest()
    put = await _put(api, url, content, content_type="application/x-custom", name="Report.bin")
    assert put.status_code == 200, put.text
    info = {
        "name": "Report.bin",
        "size": len(content),
        "content_type": "application/x-custom",
        "sha256": digest,
        "url": url,
    }
    assert put.json() == {"data": info}

    got = await _get(api, url)
    assert got.status_code == 200
    assert got.content == content
    assert hashlib.sha256(got.content).hexdigest() == digest
    assert got.headers["content-type"] == "application/x-custom"
    assert got.headers["content-length"] == str(len(content))
    assert got.headers["etag"] == f'"{digest}"'
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Report.bin\"; filename*=UTF-8''Report.bin"
    )
    assert _blob(api, digest).read_bytes() == content

    # The record renders the same object, over REST and GraphQL.
    record = await _get(api, f"{FOLDERS}/{folder}")
    assert record.json()["data"]["attachment"] == info
    graphql = await api.client.post(
        "/graphql",
        json={"query": f"{{ folder(id: {folder}) {{ attachment {{ {' '.join(info)} }} }} }}"},
        headers=api.auth(api.admin_key),
    )
    assert graphql.json() == {"data": {"folder": {"attachment": info}}}, graphql.text


async def test_multipart_upload_keeps_a_safe_name_and_the_part_type(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    content = secrets.token_bytes(5000)
    response = await api.client.put(
        url,
        files={"file": ("../../etc/pass\u202ewd.txt", content, "text/plain")},
        headers=api.auth(api.admin_key),
    )
    assert response.status_code == 200, response.text
    info = response.json()["data"]
    assert info["name"] == "passwd.txt"
    assert info["content_type"] == "text/plain"
    got = await _get(api, url)
    assert got.content == content
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"passwd.txt\"; filename*=UTF-8''passwd.txt"
    )
    windows = await _put(api, url, b"x", name="C:\\Users\\me\\..\\a\x07b.txt ")
    assert windows.json()["data"]["name"] == "ab.txt"
    nameless = await _put(api, url, b"x", name="../..")
    assert nameless.json()["data"]["name"] == "attachment"
    # A name outside ASCII keeps its exact form in `filename*`.
    await _put(api, url, b"x", name="Zpráva č. 1.pdf")
    got = await _get(api, url)
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Zpr_va _. 1.pdf\"; filename*=UTF-8''Zpr%C3%A1va%20%C4%8D.%201.pdf"
    )


async def test_json_writes_of_a_file_property_are_refused(api: Api) -> None:
    response = await api.client.post(
        FOLDERS,
        json={"title": "F", "attachment": {"name": "x", "sha256": "0" * 64}},
        headers=api.auth(api.admin_key),
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "attachment", "message": "files are uploaded to /files/attachment"}
    ]


# --- ranges and revalidation --------------------------------------------------------------


async def test_ranges(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    content = bytes(range(256)) * 4  # 1,024 bytes
    await _put(api, url, content)
    etag = f'"{hashlib.sha256(content).hexdigest()}"'

    middle = await _get(api, url, Range="bytes=10-19")
    assert middle.status_code == 206
    assert middle.content == content[10:20]
    assert middle.headers["content-range"] == "bytes 10-19/1024"
    assert middle.headers["content-length"] == "10"
    assert middle.headers["etag"] == etag

    tail = await _get(api, url, Range="bytes=-100")
    assert (tail.status_code, tail.content) == (206, content[-100:])
    assert tail.headers["content-range"] == "bytes 924-1023/1024"
    open_ended = await _get(api, url, Range="bytes=1000-")
    assert (open_ended.status_code, open_ended.content) == (206, content[1000:])
    beyond_end = await _get(api, url, Range="bytes=1000-5000")
    assert (beyond_end.status_code, beyond_end.content) == (206, content[1000:])

    unsatisfiable = await _get(api, url, Range="bytes=1024-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */1024"
    assert unsatisfiable.headers["content-type"] == "application/problem+json"

    # Several ranges, another unit, a malformed or reversed range, or a stale If-Range:
    # the whole file, as RFC 9110 allows.
    for headers in (
        {"Range": "bytes=0-1,5-6"},
        {"Range": "items=0-1"},
        {"Range": "bytes=abc"},
        {"Range": "bytes=20-10"},
        {"Range": "bytes=0-1", "If-Range": '"stale"'},
    ):
        whole = await _get(api, url, **headers)
        assert (whole.status_code, whole.content) == (200, content), headers
    current = await _get(api, url, Range="bytes=0-1", **{"If-Range": etag})
    assert (current.status_code, current.content) == (206, content[:2])


async def test_if_none_match(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    await _put(api, url, b"first")
    etag = (await _get(api, url)).headers["etag"]
    same = await _get(api, url, **{"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    other = await _get(api, url, **{"If-None-Match": '"something-else"'})
    assert (other.status_code, other.content) == (200, b"first")
    await _put(api, url, b"second")
    changed = await _get(api, url, **{"If-None-Match": etag})
    assert (changed.status_code, changed.content) == (200, b"second")


async def test_file_writes_refresh_cached_records(api: Api) -> None:
    folder = await _folder(api)
    record_url = f"{FOLDERS}/{folder}"
    url = f"{record_url}/files/attachment"
    assert (await _get(api, record_url)).headers["x-cache"] == "MISS"
    cached = await _get(api, record_url)
    assert (cached.headers["x-cache"], cached.json()["data"]["attachment"]) == ("HIT", None)
    await _put(api, url, b"v1")
    fresh = await _get(api, record_url)
    assert fresh.json()["data"]["attachment"]["sha256"] == hashlib.sha256(b"v1").hexdigest()
    assert (await _get(api, record_url)).headers["x-cache"] == "HIT"
    await api.client.delete(url, headers=api.auth(api.admin_key))
    assert (await _get(api, record_url)).json()["data"]["attachment"] is None


# --- limits -------------------------------------------------------------------------------


async def test_too_large_is_413_and_changes_nothing(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    old = secrets.token_bytes(1000)
    await _put(api, url, old)
    exactly = await _put(api, f"{FOLDERS}/{await _folder(api)}/files/attachment", b"a" * LIMIT)
    assert exactly.status_code == 200, exactly.text

    too_large = await _put(api, url, secrets.token_bytes(LIMIT + 1))
    assert too_large.status_code == 413
    assert too_large.json()["type"].endswith("/too_large")

    multipart = await api.client.put(
        url, files={"file": ("big.bin", b"m" * (LIMIT + 1))}, headers=api.auth(api.admin_key)
    )
    assert multipart.status_code == 413

    assert (await _get(api, url)).content == old
    assert _leftovers(api) == []


async def test_content_type_allow_list(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/scan"
    png = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(100)
    assert (await _put(api, url, png, content_type="image/png")).status_code == 200
    refused = await _put(api, url, b"MZ...", content_type="application/x-msdownload")
    assert refused.status_code == 415
    assert refused.json()["errors"] == [
        {
            "field": "scan",
            "message": "scan accepts image/png, application/pdf, text/*, "
            "not application/x-msdownload",
        }
    ]
    as_part = await api.client.put(
        url,
        files={"file": ("x.exe", b"MZ", "application/x-msdownload")},
        headers=api.auth(api.admin_key),
    )
    assert as_part.status_code == 415
    missing = await _put(api, url, b"?", content_type="")  # no type: application/octet-stream
    assert missing.status_code == 415
    malformed = await _put(api, url, b"?", content_type="not a type")
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "Content-Type"
    # `text/*` takes any text type; of its parameters only the charset is kept.
    text = await _put(api, url, b"hello", content_type='text/csv; header=present; charset="UTF-8"')
    assert text.status_code == 200
    assert text.json()["data"]["content_type"] == "text/csv; charset=utf-8"
    refused_again = await _put(api, url, b"<x/>", content_type="application/xml")
    assert refused_again.status_code == 415
    got = await _get(api, url)
    assert got.content == b"hello"
    assert got.headers["content-type"] == "text/csv; charset=utf-8"
    latin = await _put(api, url, b"\xe9", content_type="text/plain; charset=ISO-8859-2")
    assert latin.json()["data"]["content_type"] == "text/plain; charset=iso-8859-2"
    assert (await _get(api, url)).headers["content-type"] == "text/plain; charset=iso-8859-2"
    bare = await _put(api, url, b"plain", content_type="text/plain")
    assert bare.json()["data"]["content_type"] == "text/plain"
    assert (await _get(api, url)).headers["content-type"] == "text/plain"
    assert _leftovers(api) == []


async def test_a_failing_store_is_503_and_changes_nothing(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    await _put(api, url, b"old")
    staging = _store(api).root / "tmp"
    staging.rmdir()
    staging.write_bytes(b"")  # a file where the staging directory should be
    try:
        response = await _put(api, url, b"new")
    finally:
        staging.unlink()
        staging.mkdir()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "30"
    assert (await _get(api, url)).content == b"old"


# --- rights -------------------------------------------------------------------------------


async def test_hidden_file_property_is_absent_for_the_role(api: Api) -> None:
    clerk = await _user_key(api, "clerk", "clerk")
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/private"
    await _put(api, url, b"top secret")
    record = (await _get(api, f"{FOLDERS}/{folder}", clerk)).json()["data"]
    assert "private" not in record
    for response in (
        await _get(api, url, clerk),
        await _put(api, url, b"mine now", key=clerk),
        await api.client.delete(url, headers=api.auth(clerk)),
    ):
        assert response.status_code == 404, response.text
    assert (await _get(api, url)).content == b"top secret"


async def test_refused_writes_keep_the_old_bytes(api: Api) -> None:
    clerk = await _user_key(api, "clerk", "clerk")
    viewer = await _user_key(api, "viewer", "viewer")
    open_folder = await _folder(api)
    locked = await _folder(api, locked=True)
    old = secrets.token_bytes(3000)
    for folder in (open_folder, locked):
        for prop in ("attachment", "stamp"):
            await _put(api, f"{FOLDERS}/{folder}/files/{prop}", old)

    async def attempt(key: str, folder: int, prop: str) -> int:
        url = f"{FOLDERS}/{folder}/files/{prop}"
        put = await _put(api, url, b"new", key=key)
        removed = await api.client.delete(url, headers=api.auth(key))
        assert put.status_code == removed.status_code, (put.text, removed.text)
        return put.status_code

    assert await attempt(viewer, open_folder, "attachment") == 403  # no update right
    assert await attempt(clerk, locked, "attachment") == 403  # outside the update scope
    assert await attempt(clerk, open_folder, "stamp") == 403  # read-only for the role
    for folder in (open_folder, locked):
        for prop in ("attachment", "stamp"):
            got = await _get(api, f"{FOLDERS}/{folder}/files/{prop}", viewer)
            assert got.content == old
    # Inside its scope the clerk may replace and remove.
    url = f"{FOLDERS}/{open_folder}/files/attachment"
    assert (await _put(api, url, b"clerk's", key=clerk)).status_code == 200
    assert (await api.client.delete(url, headers=api.auth(clerk))).status_code == 204
    assert (await _get(api, url, clerk)).status_code == 404
    assert (await api.client.delete(url, headers=api.auth(clerk))).status_code == 404
    # A removed file is null again, for filters too.
    empty = await _get(api, f"{FOLDERS}?_filter=attachment is null&_fields=id")
    assert empty.json()["data"] == [{"id": open_folder}]
    assert _leftovers(api) == []


async def test_unknown_records_and_properties(api: Api) -> None:
    folder = await _folder(api)
    assert (await _get(api, f"{FOLDERS}/{folder}/files/attachment")).status_code == 404
    assert (await _get(api, f"{FOLDERS}/999/files/attachment")).status_code == 404
    assert (await _put(api, f"{FOLDERS}/999/files/attachment", b"x")).status_code == 404
    assert (await _get(api, f"{FOLDERS}/{folder}/files/title")).status_code == 404
    assert (await _get(api, f"{FOLDERS}/{folder}/files/attachment", "jgw_nope")).status_code == 401


async def test_reads_of_an_audited_type_are_logged(api: Api) -> None:
    created = await api.client.post(PHOTOS, json={"caption": "c"}, headers=api.auth(api.admin_key))
    photo = created.json()["data"]["id"]
    url = f"{PHOTOS}/{photo}/files/image"
    await _put(api, url, b"GIF89a", content_type="image/gif")
    assert (await _get(api, url)).content == b"GIF89a"
    async with api.db() as services:
        audit = services.schema.system.audit
        async with services.engine.connect() as conn:
            rows = (await conn.execute(audit.select())).mappings().all()
    assert [(r["type_name"], r["record_id"], r["action"]) for r in rows] == [
        ("Photo", photo, "read")
    ]


# --- orphans ------------------------------------------------------------------------------


async def test_blobs_go_when_no_record_holds_them(api: Api) -> None:
    first, second = await _folder(api), await _folder(api)
    shared = secrets.token_bytes(2048)
    digest = hashlib.sha256(shared).hexdigest()
    await _put(api, f"{FOLDERS}/{first}/files/attachment", shared)
    await _put(api, f"{FOLDERS}/{second}/files/scan", shared, content_type="application/pdf")
    created = await api.client.post(PHOTOS, json={}, headers=api.auth(api.admin_key))
    photo = created.json()["data"]["id"]
    await _put(api, f"{PHOTOS}/{photo}/files/image", shared)
    assert _blob(api, digest).exists()

    # Replaced on one record: another still holds it.
    replacement = secrets.token_bytes(100)
    await _put(api, f"{FOLDERS}/{first}/files/attachment", replacement)
    assert _blob(api, digest).exists()
    # A file removed: the same.
    assert (
        await api.client.delete(f"{FOLDERS}/{second}/files/scan", headers=api.auth(api.admin_key))
    ).status_code == 204
    assert _blob(api, digest).exists()
    # The last holder (another type) deleted: gone.
    deleted = await api.client.delete(f"{PHOTOS}/{photo}", headers=api.auth(api.admin_key))
    assert deleted.status_code == 204
    assert not _blob(api, digest).exists()

    # Replacing the only holder's file drops the old blob at once.
    new_digest = hashlib.sha256(replacement).hexdigest()
    await _put(api, f"{FOLDERS}/{first}/files/attachment", b"third")
    assert not _blob(api, new_digest).exists()
    # So does deleting the record.
    third = hashlib.sha256(b"third").hexdigest()
    assert _blob(api, third).exists()
    await api.client.delete(f"{FOLDERS}/{first}", headers=api.auth(api.admin_key))
    assert not _blob(api, third).exists()
    # Uploading content a record already holds again keeps one blob.
    await _put(api, f"{FOLDERS}/{second}/files/attachment", b"same")
    await _put(api, f"{FOLDERS}/{second}/files/stamp", b"same")
    await _put(api, f"{FOLDERS}/{second}/files/attachment", b"same")
    assert _blob(api, hashlib.sha256(b"same").hexdigest()).read_bytes() == b"same"
    assert _leftovers(api) == []


# --- multipart create ---------------------------------------------------------------------


async def test_create_with_files(api: Api) -> None:
    clerk = await _user_key(api, "clerk", "clerk")
    attachment = secrets.token_bytes(4000)
    response = await api.client.post(
        FOLDERS,
        data={"data": '{"title": "With files"}'},
        files={
            "attachment": ("a.bin", attachment, "application/octet-stream"),
            "scan": ("scan.pdf", b"%PDF-1.7", "application/pdf"),
        },
        headers=api.auth(clerk),
    )
    assert response.status_code == 201, response.text
    record = response.json()["data"]
    assert record["title"] == "With files"
    assert record["attachment"]["name"] == "a.bin"
    assert record["attachment"]["size"] == len(attachment)
    assert record["scan"]["content_type"] == "application/pdf"
    assert record["stamp"] is None
    got = await _get(api, record["attachment"]["url"], clerk)
    assert got.content == attachment
    assert record["attachment"]["url"] == f"{FOLDERS}/{record['id']}/files/attachment"


async def test_refused_creates_leave_nothing(api: Api) -> None:
    clerk = await _user_key(api, "clerk", "clerk")
    viewer = await _user_key(api, "viewer", "viewer")
    cases: list[tuple[str, dict[str, Any], dict[str, Any], int, str]] = [
        (clerk, {"data": '{"title": "x"}'}, {"stamp": ("s", b"1")}, 422, "stamp"),
        (clerk, {"data": '{"title": "x"}'}, {"private": ("p", b"1")}, 422, "private"),
        (clerk, {"data": '{"title": "x"}'}, {"title": ("t", b"1")}, 422, "title"),
        (clerk, {"data": '{"title": "x"}'}, {"scan": ("x", b"1", "text/html")}, 200, ""),
        (clerk, {"data": '{"title": "x"}'}, {"scan": ("x", b"1", "video/mp4")}, 415, "scan"),
        (clerk, {"data": '{"title": 5}'}, {"attachment": ("a", b"1")}, 422, "title"),
        (clerk, {"data": "[1]"}, {"attachment": ("a", b"1")}, 422, "data"),
        (clerk, {"data": '{"title": "x"}'}, {"attachment": ("a", b"1" * (LIMIT + 1))}, 413, ""),
        (viewer, {"data": '{"title": "x"}'}, {"attachment": ("a", b"1")}, 403, ""),
    ]
    created = 0
    for key, data, parts, status, field in cases:
        response = await api.client.post(FOLDERS, data=data, files=parts, headers=api.auth(key))
        if status == 200:  # text/* is on the allow-list
            assert response.status_code == 201, response.text
            created += 1
            continue
        assert response.status_code == status, (parts, response.text)
        if field:
            assert response.json()["errors"][0]["field"] == field, response.text
    listed = await _get(api, f"{FOLDERS}?_count=1")
    assert listed.json()["meta"]["total"] == created
    assert _leftovers(api) == []
    blobs = [p for p in _store(api).root.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blobs) == created  # only the accepted create's file


async def test_malformed_multipart_bodies(api: Api) -> None:
    folder = await _folder(api)
    url = f"{FOLDERS}/{folder}/files/attachment"
    await _put(api, url, b"old")
    headers = {**api.auth(api.admin_key), "Content-Type": "multipart/form-data; boundary=xyz"}
    broken = b"--xyz\r\nContent-Disposition: form-data; name=attachment\r\n\r\nno end"
    assert (await api.client.put(url, content=broken, headers=headers)).status_code == 400
    assert (await api.client.post(FOLDERS, content=broken, headers=headers)).status_code == 400
    two = (
        b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
        b"--xyz\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n--xyz--\r\n"
    )
    response = await api.client.put(url, content=two, headers=headers)
    assert response.status_code == 422, response.text
    empty = b"--xyz--\r\n"
    assert (await api.client.put(url, content=empty, headers=headers)).status_code == 422
    no_boundary = {**api.auth(api.admin_key), "Content-Type": "multipart/form-data"}
    assert (await api.client.put(url, content=b"x", headers=no_boundary)).status_code == 400
    assert (await _get(api, url)).content == b"old"
    assert _leftovers(api) == []


async def test_concurrent_release_never_loses_a_blob_just_taken(api: Api) -> None:
    """Record A drops content X while record B takes X: B's blob must survive."""
    holder, taker = await _folder(api), await _folder(api)
    for round_ in range(8):
        shared = f"shared content {round_}".encode()
        await _put(api, f"{FOLDERS}/{holder}/files/attachment", shared)
        replaced, taken = await asyncio.gather(
            _put(api, f"{FOLDERS}/{holder}/files/attachment", f"other {round_}".encode()),
            _put(api, f"{FOLDERS}/{taker}/files/attachment", shared),
        )
        assert (replaced.status_code, taken.status_code) == (200, 200)
        got = await _get(api, f"{FOLDERS}/{taker}/files/attachment")
        assert (got.status_code, got.content) == (200, shared)
        assert _blob(api, hashlib.sha256(shared).hexdigest()).exists()


# --- through a real server: streaming ------------------------------------------------------


@contextlib.asynccontextmanager
async def _served(settings: Settings) -> AsyncIterator[str]:
    """The app on `settings`, served by uvicorn on a free port (as conftest's `live_url`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), lifespan="on", log_level="warning", http="h11", ws="none"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
                pytest.fail("uvicorn stopped before serving")
            await asyncio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving


LARGE = 256 * 1024 * 1024
MEMORY_BOUND = 32 * 1024 * 1024


async def test_memory_stays_flat_for_a_large_upload_and_download(api: Api) -> None:
    """256 MiB up and down through uvicorn, then a 64 MiB multipart create: Python's
    traced peak stays far below either."""
    settings = dataclasses.replace(
        api.settings,
        files=dataclasses.replace(api.settings.files, max_upload_bytes=LARGE),
    )
    folder = await _folder(api)
    path = f"{FOLDERS}/{folder}/files/attachment"
    block = secrets.token_bytes(1024 * 1024)
    expected = hashlib.sha256()
    for _ in range(LARGE // len(block)):
        expected.update(block)

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length announced
        for _ in range(LARGE // len(block)):
            yield block

    headers = {**api.auth(api.admin_key), "Content-Type": "application/octet-stream"}
    async with _served(settings) as base, httpx.AsyncClient(base_url=base, timeout=120) as client:
        tracemalloc.start()
        try:
            uploaded = await client.put(path, content=body(), headers=headers)
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            digest, size = hashlib.sha256(), 0
            async with client.stream("GET", path, headers=api.auth(api.admin_key)) as got:
                assert got.status_code == 200
                assert got.headers["content-length"] == str(LARGE)
                async for chunk in got.aiter_raw():
                    digest.update(chunk)
                    size += len(chunk)
            download_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            form_headers = {
                **api.auth(api.admin_key),
                "Content-Type": "multipart/form-data; boundary=jgw-bench",
            }
            created = await client.post(FOLDERS, content=_form(block, 64), headers=form_headers)
            form_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["data"]["sha256"] == expected.hexdigest()
    assert (size, digest.hexdigest()) == (LARGE, expected.hexdigest())
    assert upload_peak < MEMORY_BOUND, upload_peak
    assert download_peak < MEMORY_BOUND, download_peak
    assert created.status_code == 201, created.text
    assert created.json()["data"]["attachment"]["size"] == 64 * len(block)
    assert form_peak < MEMORY_BOUND, form_peak


async def _form(block: bytes, count: int) -> AsyncIterator[bytes]:
    """A multipart create of `count` blocks, streamed (a `data` part, then the file)."""
    yield (
        b"--jgw-bench\r\nContent-Disposition: form-data; name=data\r\n\r\n"
        b'{"title": "Large"}\r\n'
        b"--jgw-bench\r\nContent-Disposition: form-data; name=attachment; "
        b'filename="large.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    for _ in range(count):
        yield block
    yield b"\r\n--jgw-bench--\r\n"


async def test_streamed_uploads_are_counted_and_interrupted_ones_leave_nothing(api: Api) -> None:
    folder = await _folder(api)
    path = f"{FOLDERS}/{folder}/files/attachment"
    await _put(api, path, b"old")

    async def over_the_limit() -> AsyncIterator[bytes]:  # no Content-Length
        for _ in range(LIMIT // 1000 + 2):
            yield b"z" * 1000

    async with _served(api.settings) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            headers = {**api.auth(api.admin_key), "Content-Type": "text/plain"}
            refused = await client.put(path, content=over_the_limit(), headers=headers)
            assert refused.status_code == 413, refused.text
            form = await client.post(
                FOLDERS,
                data={"data": '{"title": "big"}'},
                files={"attachment": ("a", b"x" * (LIMIT + 1))},
                headers=api.auth(api.admin_key),
            )
            assert form.status_code == 413, form.text

        # A client that goes away halfway: nothing changes, nothing is left behind.
        port = int(base.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.admin_key}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"partial" * 100
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
        for _ in range(100):  # the server notices the disconnect on its next read
            if not _leftovers(api):
                break
            await asyncio.sleep(0.05)
        assert _leftovers(api) == []
    assert (await _get(api, path)).content == b"old"
