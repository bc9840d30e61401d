from tests.conftest import Api


async def test_explore(api: Api) -> None:
    h = api.auth(api.admin_key)
    c = api.client
    for body in [
        {"login": "x1", "password": "a-long-password", "bogus": 1, "other": 2},
        {"login": "x1", "password": None},
        {"login": "x1", "password": 5},
        {"login": "x1", "roles": "admin"},
        {"login": "x1", "valid_from": "2026-01-01T00:00:00", "valid_to": "2025-01-01"},
        {"login": "x1", "valid_from": "2026-07-01T09:00:00", "timezone": "Mars/Base"},
    ]:
        r = await c.post("/api/v1/users", json=body, headers=h)
        print(r.status_code, r.text)
    r = await c.post("/api/v1/users", json={"login": "y", "bogus": 1})
    print("unauth", r.status_code, r.text)
    for q in ["_limit=0", "_limit=1001", "_offset=-1", "_limit=abc"]:
        r = await c.get("/api/v1/users?" + q, headers=h)
        print(q, r.status_code, r.text)
    r = await c.get("/api/v1/users", headers=h)
    print(r.status_code, r.headers, r.text)
    r = await c.post("/api/v1/users", content=b"[1,2]", headers={**h, "content-type": "application/json"})
    print(r.status_code, r.text)
    r = await c.post("/api/v1/users", content=b"{not json", headers={**h, "content-type": "application/json"})
    print(r.status_code, r.text)
