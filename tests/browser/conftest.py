"""A gateway on a real TCP port and a headless Chromium page to drive it.

The browser is the system's `/usr/bin/chromium`, driven by Playwright's Python package
without its own browser downloads. Without it the tests skip, unless
`JGW_REQUIRE_BROWSER=1` (as CI sets) makes its absence a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _require_browser() -> None:
    """Skip (or, under JGW_REQUIRE_BROWSER=1, fail) when the browser cannot run here."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright  # noqa: F401, PLC0415 - only to report its absence
    except ImportError:
        missing.append("the playwright package is missing (the dev extra installs it)")
    if not missing:
        return
    reason = "; ".join(missing)
    if os.environ.get("JGW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"JGW_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh page in a fresh browser context (its own cookies)."""
    _require_browser()
    from playwright.async_api import async_playwright  # noqa: PLC0415 - optional

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 900})
            context.set_default_timeout(15_000)
            yield await context.new_page()
            await context.close()
        finally:
            await browser.close()
