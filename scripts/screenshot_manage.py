"""Take `docs/manage.png`: the `/manage` screen, signed in, with some figures.

Serves a throwaway gateway (the demo tenant on SQLite and the embedded Valkey, in a
temporary directory) on a free port, creates a few records and reads them through the
API so that the cache holds entries and has counted hits, misses and bypasses, purges
one type through the screen, and saves a screenshot from headless Chromium.

    .venv/bin/python scripts/screenshot_manage.py [output.png]
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from pathlib import Path

import httpx
import uvicorn
from playwright.async_api import async_playwright

from gateway.app import create_app
from gateway.runtime import open_services
from gateway.settings import Settings
from resolvers.users import ensure_admin

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ADMIN, PASSWORD = "admin", "a-password-for-the-screenshot"


async def _warm(base: str) -> str:
    """Records and reads as a small integration would make them; the admin's key."""
    async with httpx.AsyncClient(base_url=base) as client:
        issued = await client.post(
            "/api/v1/auth/keys", json={"login": ADMIN, "password": PASSWORD, "name": "ops"}
        )
        key: str = issued.raise_for_status().json()["key"]
        auth = {"Authorization": f"Bearer {key}"}
        for name in ("Acme", "Globex", "Initech", "Umbrella"):
            company = await client.post(
                "/api/v1/collections/Company", json={"name": name}, headers=auth
            )
            company_id = company.raise_for_status().json()["data"]["id"]
            for title in ("Rollout", "Renewal", "Support"):
                deal = {"title": f"{name} {title}", "company": company_id, "status": "open"}
                created = await client.post("/api/v1/collections/Deal", json=deal, headers=auth)
                deal_id = created.raise_for_status().json()["data"]["id"]
                await client.get(f"/api/v1/collections/Deal/{deal_id}", headers=auth)
            await client.get(f"/api/v1/collections/Company/{company_id}", headers=auth)
        reads = [
            "/api/v1/collections/Company",
            "/api/v1/collections/Deal?_limit=5",
            "/api/v1/collections/Deal?status=open",
            "/api/v1/collections/Contact",
            "/api/v1/collections/Document",
            "/api/v1/collections/Document?_limit=10",
        ]
        for _ in range(6):
            for url in reads:
                (await client.get(url, headers=auth)).raise_for_status()
        await client.get("/api/v1/collections/Company?_noCache=1", headers=auth)
    return key


async def main(output: Path) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.from_env(
            {"GATEWAY_DATA_DIR": data_dir, "GATEWAY_PASSWORD_PROFILE": "test"}
        )
        async with open_services(settings, migrate=True) as services:
            await ensure_admin(services, login=ADMIN, password=PASSWORD)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            server = uvicorn.Server(
                uvicorn.Config(create_app(settings), log_level="warning", ws="none")
            )
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if serving.done():
                    serving.result()  # raises why it stopped
                    raise SystemExit("uvicorn stopped before serving")
                await asyncio.sleep(0.05)
            try:
                key = await _warm(base)
                await _screenshot(base, key, output)
            finally:
                server.should_exit = True
                await serving


async def _screenshot(base: str, key: str, output: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        await page.goto(f"{base}/manage")
        await page.get_by_label("API key").fill(key)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#purge-type-name").select_option("Document")
        await page.get_by_role("button", name="Purge type…").click()
        await page.get_by_role("button", name="Confirm").click()
        await page.wait_for_url("**/manage?purged=*")
        await page.screenshot(path=str(output), full_page=True)
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/manage.png")))
