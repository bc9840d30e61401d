"""The demo tenant's commands: CRM operations that take several writes, done as one.

Each runs in one transaction as the caller, with the caller's rights: if any write is
refused (a deal outside the caller's update scope, a contact it may not delete), nothing
of the command happens.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from resolvers.commands import CommandContext, command
from resolvers.errors import Conflict, FieldError, Invalid

__all__ = ["CloseDeal", "ClosedDeal", "MergeContacts", "MergedContacts"]

RecordId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1, description="A record's id.")]
_PAGE = 1000


class CloseDeal(msgspec.Struct, forbid_unknown_fields=True):
    """Which deal, how it ended, and an optional note for the activity log."""

    deal: RecordId
    outcome: Literal["won", "lost"] = "won"
    note: Annotated[str, msgspec.Meta(max_length=20000)] | None = None


class ClosedDeal(msgspec.Struct):
    """The closed deal and the activity that records it, as the caller may see them."""

    deal: dict[str, Any]
    activity: dict[str, Any]


@command("deal.close", needs=["Deal.update", "Activity.create"])
async def close_deal(ctx: CommandContext, data: CloseDeal) -> ClosedDeal:
    """Close an open deal as won or lost, and log a done note activity about it."""
    deal = await ctx.get("Deal", data.deal, lock=True)
    if deal.get("status") != "open":
        raise Conflict(f"the deal is already {deal.get('status')}", field="deal")
    now = ctx.now.isoformat()
    closed = await ctx.update("Deal", data.deal, {"status": data.outcome, "closed_on": now})
    activity = await ctx.create(
        "Activity",
        {
            "subject": f"Deal {data.outcome}: {deal['title']}"[:200],
            "kind": "note",
            "due_at": now,
            "done": True,
            "deal": data.deal,
            "body": data.note,
        },
    )
    return ClosedDeal(deal=closed, activity=activity)


class MergeContacts(msgspec.Struct, forbid_unknown_fields=True):
    """`duplicate` is merged into `keep`, then deleted."""

    keep: RecordId
    duplicate: RecordId


class MergedContacts(msgspec.Struct):
    """The kept contact after the merge, and how many records now point at it."""

    contact: dict[str, Any]
    activities_moved: int
    deals_moved: int


_FILLED = ("email", "phone", "company", "birthday", "newsletter", "notes")


@command("contact.merge", needs=["Contact.update", "Contact.delete"])
async def merge_contacts(ctx: CommandContext, data: MergeContacts) -> MergedContacts:
    """Merge a duplicate contact into the one kept: its activities and deals point at the
    kept contact, fields the kept one lacks are taken from it, and it is deleted."""
    if data.keep == data.duplicate:
        raise Invalid("nothing to merge", [FieldError("duplicate", "is the contact kept")])
    keep = await ctx.get("Contact", data.keep, lock=True)
    duplicate = await ctx.get("Contact", data.duplicate, lock=True)
    activities = await _moved(ctx, "Activity", {"contact": {"eq": data.duplicate}})
    for activity in activities:
        await ctx.update("Activity", activity["id"], {"contact": data.keep})
    deals = await _moved(ctx, "Deal", {"contacts": {"eq": data.duplicate}})
    for deal in deals:
        contacts = [data.keep if c == data.duplicate else c for c in deal["contacts"]]
        await ctx.update("Deal", deal["id"], {"contacts": list(dict.fromkeys(contacts))})
    # Unique values (the e-mail) are free only once the duplicate is gone.
    filled = {
        name: duplicate[name]
        for name in _FILLED
        if name in keep and keep[name] is None and duplicate.get(name) is not None
    }
    await ctx.delete("Contact", data.duplicate)
    merged = await ctx.update("Contact", data.keep, filled) if filled else keep
    return MergedContacts(contact=merged, activities_moved=len(activities), deals_moved=len(deals))


async def _moved(
    ctx: CommandContext, type_name: str, where: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every record of `type_name` matching `where` that the caller can read."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = await ctx.list(type_name, filter=where, limit=_PAGE, after=after)
        found += page.data
        if page.next is None:
            return found
        after = page.next
