"""A real introspection client against a running gateway: GraphQL Code Generator.

The node project in `tests/codegen` (its lockfile committed) is installed with `npm ci`
when its `node_modules` is missing. The gateway is served by uvicorn on a free port, and
the generator introspects `/graphql` with an API key, as a front-end team would, and
writes TypeScript types. Without `npm` the test skips, unless `JGW_REQUIRE_CODEGEN=1`
(as `.ci/run` sets) makes its absence a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Api

CODEGEN = Path(__file__).parents[1] / "codegen"
GENERATOR = CODEGEN / "node_modules" / ".bin" / "graphql-codegen"
STEP_TIMEOUT = 120.0
"""Seconds for `npm ci` (about 10 s) or one generation (about 2 s)."""


@pytest.fixture
def npm() -> str:
    """The `npm` executable; skip (or fail under JGW_REQUIRE_CODEGEN=1) without it.

    Asked for first, so that a skip starts no gateway.
    """
    npm = shutil.which("npm")
    if npm is not None:
        return npm
    reason = "npm is not installed: GraphQL Code Generator (tests/codegen) cannot run"
    if os.environ.get("JGW_REQUIRE_CODEGEN") == "1":
        pytest.fail(f"JGW_REQUIRE_CODEGEN=1 but {reason}", pytrace=False)
    pytest.skip(reason)


async def _run(*command: str, env: dict[str, str] | None = None) -> str:
    """Run `command` in tests/codegen without blocking the loop the gateway serves on."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=CODEGEN,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{text}"
    return text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_graphql_code_generator_types_the_live_schema(
    npm: str, api: Api, live_url: str, tmp_path: Path
) -> None:
    if not GENERATOR.exists():
        await _run(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
    await api.create_user("frontend", roles=["integration"])
    key = await api.login("frontend")  # an ordinary API user: useApi lets it introspect
    output = tmp_path / "graphql.ts"
    env = {
        **os.environ,
        "JGW_GRAPHQL_URL": f"{live_url}/graphql",
        "JGW_API_KEY": key,
        "JGW_CODEGEN_OUTPUT": str(output),
    }

    await _run(str(GENERATOR), "--config", "codegen.cjs", env=env)

    generated = output.read_text()
    for line in (
        "export type Company = {",
        "  name?: Maybe<Scalars['String']['output']>;",
        "  company?: Maybe<Company>;",  # Contact.company, a reference
        "export enum DealStatus {",
        "export type DealWhere = {",
        "export type Mutation = {",
        "  createDeal: Deal;",
    ):
        assert line in generated, line
    assert "SyncCursor" not in generated  # `api = false` types stay internal
