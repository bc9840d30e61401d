"""Declarations the loader refuses, each for its own reason."""

from __future__ import annotations

from typing import Any

from resolvers.commands import CommandContext, command
from tests.command_modules.basic import Nothing


@command("bad.permission", needs="manageEverything")
async def unknown_permission(ctx: CommandContext, data: Nothing) -> Nothing:
    return data


@command("bad.type", needs=["Invoice.update"])
async def unknown_type(ctx: CommandContext, data: Nothing) -> Nothing:
    return data


@command("bad.right", needs=["Note.approve"])
async def unknown_right(ctx: CommandContext, data: Nothing) -> Nothing:
    return data


@command("Bad Name", needs="useApi")
async def bad_name(ctx: CommandContext, data: Nothing) -> Nothing:
    return data


@command("bad.sync", needs="useApi")
def not_async(ctx: CommandContext, data: Nothing) -> Nothing:
    return data


@command("bad.input", needs="useApi")
async def untyped_input(ctx: CommandContext, data: dict[str, Any]) -> Nothing:
    return Nothing()


@command("bad.needs", needs=[])
async def needs_nothing(ctx: CommandContext, data: Nothing) -> Nothing:
    return data
