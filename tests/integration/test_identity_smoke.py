"""A first end-to-end pass over identity: issue, validate, revoke (both backends)."""

from __future__ import annotations

from tests.conftest import Api


async def test_key_round_trip(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    current = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(key))
    assert current.status_code == 200
    assert current.json()["user"]["login"] == "carol"
    assert (
        await api.client.delete("/api/v1/auth/keys/current", headers=api.auth(key))
    ).status_code == 204
    again = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(key))
    assert again.status_code == 401
