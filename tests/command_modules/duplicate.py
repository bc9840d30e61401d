"""Declares `note.add` again: a tenant loading it next to `basic` is refused."""

from __future__ import annotations

from resolvers.commands import CommandContext, command
from tests.command_modules.basic import NoteInput, Nothing


@command("note.add", needs="Note.create")
async def add_note_again(ctx: CommandContext, data: NoteInput) -> Nothing:
    del ctx, data
    return Nothing()
