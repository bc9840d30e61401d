"""Commands that exercise the engine: writes, failures after writes, rights, types."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Annotated, Any, Literal

import msgspec

from resolvers.commands import CommandContext, command
from resolvers.errors import Conflict

Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class NoteInput(msgspec.Struct, forbid_unknown_fields=True):
    subject: Name
    company: Id | None = None


class NoteResult(msgspec.Struct):
    note: dict[str, Any]


@command("note.add", needs="Note.create")
async def add_note(ctx: CommandContext, data: NoteInput) -> NoteResult:
    """Create one note."""
    return NoteResult(
        note=await ctx.create("Note", {"subject": data.subject, "company": data.company})
    )


class NoteRef(msgspec.Struct, forbid_unknown_fields=True):
    note: Id
    fail: bool = False


@command("note.read", needs="Note.read")
async def read_note(ctx: CommandContext, data: NoteRef) -> NoteResult:
    """Read one note (an audited type), and fail afterwards if asked to."""
    note = await ctx.get("Note", data.note)
    if data.fail:
        raise Conflict("failed on purpose after an audited read")
    return NoteResult(note=note)


@command("note.remove", needs="Note.delete")
async def remove_note(ctx: CommandContext, data: NoteRef) -> Nothing:
    """Delete one note, and fail afterwards if asked to."""
    await ctx.delete("Note", data.note)
    if data.fail:
        raise Conflict("failed on purpose after a delete")
    return Nothing()


class Rename(msgspec.Struct, forbid_unknown_fields=True):
    company: Id
    name: Name


class Renamed(msgspec.Struct):
    company: dict[str, Any]
    note: dict[str, Any]


@command("company.rename", needs=["Company.update", "Note.create"])
async def rename_company(ctx: CommandContext, data: Rename) -> Renamed:
    """Rename a company and leave a note about it."""
    before = await ctx.get("Company", data.company, lock=True)
    company = await ctx.update("Company", data.company, {"name": data.name})
    note = await ctx.create(
        "Note", {"subject": f"renamed from {before['name']}", "company": data.company}
    )
    return Renamed(company=company, note=note)


class Failing(msgspec.Struct, forbid_unknown_fields=True):
    subject: Name
    how: Literal["conflict", "crash"] = "conflict"


class Nothing(msgspec.Struct):
    pass


@command("note.fail", needs="Note.create")
async def fail_after_writing(ctx: CommandContext, data: Failing) -> Nothing:
    """Write a company and a note, then fail: nothing of it may remain."""
    company = await ctx.create("Company", {"name": data.subject})
    await ctx.create("Note", {"subject": data.subject, "company": company["id"]})
    if data.how == "conflict":
        raise Conflict("failed on purpose after two writes")
    raise RuntimeError("crashed on purpose after two writes")


class Escape(msgspec.Struct, forbid_unknown_fields=True):
    subject: Name
    company: Id


@command("note.escape", needs=["Note.create", "Company.update"])
async def write_outside_scope(ctx: CommandContext, data: Escape) -> Nothing:
    """Create a note, then rename a company that may be outside the caller's update scope."""
    await ctx.create("Note", {"subject": data.subject})
    await ctx.update("Company", data.company, {"name": data.subject})
    return Nothing()


class Registration(msgspec.Struct, forbid_unknown_fields=True):
    registration_no: Annotated[str, msgspec.Meta(max_length=32)]


class Registered(msgspec.Struct):
    company: dict[str, Any]
    retried: bool


@command("company.register", needs="Company.create")
async def register_company(ctx: CommandContext, data: Registration) -> Registered:
    """Create a company with a registration number; if it is taken, one with a suffix."""
    try:
        company = await ctx.create(
            "Company", {"name": data.registration_no, "registration_no": data.registration_no}
        )
    except Conflict:
        suffixed = f"{data.registration_no}-2"
        company = await ctx.create("Company", {"name": suffixed, "registration_no": suffixed})
        return Registered(company=company, retried=True)
    return Registered(company=company, retried=False)


@command("ops.ping", needs="manageCache")
async def ping(ctx: CommandContext, data: Nothing) -> Nothing:
    """Needs a system permission, does nothing."""
    del ctx, data
    return Nothing()


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Line(msgspec.Struct, forbid_unknown_fields=True):
    label: Name
    amount: decimal.Decimal
    tags: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=20)]], msgspec.Meta(max_length=5)
    ] = []


class Shapes(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=0, le=100)]
    ratio: float
    flag: bool
    day: dt.date
    at: dt.datetime
    colour: Colour
    mode: Literal["a", "b"]
    lines: Annotated[list[Line], msgspec.Meta(max_length=10)]
    extra: dict[str, Any] | None = None
    note: str | None = None


class ShapesEcho(msgspec.Struct):
    shapes: Shapes
    total: decimal.Decimal
    user: int


@command("shapes.echo", needs="useApi")
async def echo_shapes(ctx: CommandContext, data: Shapes) -> ShapesEcho:
    """Echo every kind of value a command input can have."""
    total = sum((line.amount for line in data.lines), decimal.Decimal(0))
    return ShapesEcho(shapes=data, total=total, user=ctx.principal.user_id)


@command("shapes.wrong", needs="useApi")
async def wrong_result(ctx: CommandContext, data: Nothing) -> Nothing:
    """Returns something else than it declares, after a write: a bug, rolled back."""
    await ctx.create("Company", {"name": "written by a buggy command"})
    return {"not": "a struct"}  # type: ignore[return-value]
