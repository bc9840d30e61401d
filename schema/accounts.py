"""Mutations for API keys and account challenges: the resolvers REST's `/auth/...` calls.

The result types mirror REST's JSON bodies field for field (snake_case, instants as
REST writes them).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import cast

import msgspec
import strawberry
from strawberry.types.field import StrawberryField

from resolvers import auth, challenges
from schema import scalars
from schema.context import GraphQLContext
from schema.types import Info

__all__ = ["account_mutations"]


def _instant(value: dt.datetime | None) -> scalars.DateTime | None:
    """As REST's JSON writes it (msgspec's ISO 8601)."""
    if value is None:
        return None
    text: str = msgspec.json.decode(msgspec.json.encode(value))
    return scalars.DateTime(text)


def _given(value: str | None) -> str | None:
    return None if value is strawberry.UNSET else value


@strawberry.type(description="The user a key acts as, with what that grants.")
class KeyOwner:
    id: scalars.BigInt
    login: str
    roles: list[str]
    permissions: list[str]
    timezone: str


@strawberry.type(description="A new API key: `key` is shown this once, only a digest is kept.")
class IssuedApiKey:
    id: scalars.BigInt
    key: str
    name: str
    expires_at: scalars.DateTime | None
    user: KeyOwner


@strawberry.enum(description="How a challenge reaches the user.")
class ChallengeMethod(enum.Enum):
    email_link = "email_link"
    email_code = "email_code"
    sms_code = "sms_code"


@strawberry.input(description="A user to register; `resolvers.users` checks every field.")
class UserInput:
    login: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    password: str | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    valid_from: scalars.DateTime | None = strawberry.UNSET
    valid_to: scalars.DateTime | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    roles: list[str] | None = strawberry.UNSET
    groups: list[str] | None = strawberry.UNSET


@strawberry.input(description="Keep the user inactive until every method is answered.")
class ChallengeInput:
    methods: list[ChallengeMethod]
    link_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Where `email_link` points, with `{token}` in it; its origin must be allowed.",
    )


@strawberry.type(description="A registered user and its challenge, if any.")
class Registration:
    user_id: scalars.BigInt
    challenge_id: str | None
    methods: list[str]
    expires_at: scalars.DateTime | None


@strawberry.type(description="Where a challenge stands after an answer.")
class ChallengeOutcome:
    challenge_id: str
    satisfied: list[str]
    pending: list[str]
    activated: bool


@strawberry.type(description="A challenge sent again with fresh secrets.")
class ChallengeRetry:
    challenge_id: str
    retries_left: int
    next_retry_at: scalars.DateTime


def _fields(value: object) -> dict[str, object]:
    """An input as the JSON body REST passes on (absent fields left out)."""
    found: dict[str, object] = {}
    for name, item in vars(value).items():
        if item is strawberry.UNSET:
            continue
        if isinstance(item, list):
            found[name] = [m.value if isinstance(m, enum.Enum) else m for m in item]
        else:
            found[name] = item
    return found


async def create_api_key(
    info: Info,
    login: str,
    password: str,
    name: str,
    expiresAt: scalars.DateTime | None = strawberry.UNSET,  # noqa: N803 - the GraphQL name
) -> IssuedApiKey:
    """Exchange a login and password for a new key (rate limited per account)."""
    context: GraphQLContext = info.context
    issued, owner = await auth.issue_key_with_password(
        context.services,
        login=login,
        password=password,
        name=name,
        expires_at=_given(expiresAt),
        client_address=context.client_address,
    )
    return IssuedApiKey(
        id=scalars.BigInt(issued.key.id),
        key=issued.secret,
        name=issued.key.name,
        expires_at=(
            scalars.DateTime(issued.key.expires_at.isoformat()) if issued.key.expires_at else None
        ),
        user=KeyOwner(
            id=scalars.BigInt(owner.id),
            login=owner.login,
            roles=list(owner.roles),
            permissions=list(owner.permissions),
            timezone=owner.timezone,
        ),
    )


async def revoke_api_key(info: Info, id: scalars.BigInt) -> bool:
    """Revoke one of your keys, or anyone's with manageUsers; the next request with it fails."""
    context: GraphQLContext = info.context
    await auth.revoke_key(context.services, context.acting(), id)
    return True


async def register(
    info: Info, user: UserInput, challenge: ChallengeInput | None = strawberry.UNSET
) -> Registration:
    """Create a user (registerUsers); with a challenge it stays inactive until answered."""
    context: GraphQLContext = info.context
    found = await challenges.register(
        context.services,
        context.acting(),
        _fields(user),
        _fields(challenge) if challenge else None,
    )
    return Registration(
        user_id=scalars.BigInt(found.user_id),
        challenge_id=found.challenge_id,
        methods=list(found.methods),
        expires_at=_instant(found.expires_at),
    )


async def answer_challenge(
    info: Info,
    challengeId: str | None = strawberry.UNSET,  # noqa: N803 - the GraphQL name
    method: str | None = strawberry.UNSET,
    code: str | None = strawberry.UNSET,
    token: str | None = strawberry.UNSET,
) -> ChallengeOutcome:
    """Answer one method with its code, or an e-mailed link's token (registerUsers)."""
    context: GraphQLContext = info.context
    outcome = await challenges.submit(
        context.services,
        context.acting(),
        challenge_id=_given(challengeId),
        method=_given(method),
        code=_given(code),
        token=_given(token),
    )
    return ChallengeOutcome(
        challenge_id=outcome.challenge_id,
        satisfied=list(outcome.satisfied),
        pending=list(outcome.pending),
        activated=outcome.completed,
    )


async def retry_challenge(
    info: Info,
    challengeId: str | None = strawberry.UNSET,  # noqa: N803 - the GraphQL name
    login: str | None = strawberry.UNSET,
    email: str | None = strawberry.UNSET,
) -> ChallengeRetry:
    """Send the pending methods again with fresh secrets; earlier ones stop working."""
    context: GraphQLContext = info.context
    result = await challenges.retry(
        context.services,
        context.acting(),
        challenge_id=_given(challengeId),
        login=_given(login),
        email=_given(email),
    )
    return ChallengeRetry(
        challenge_id=result.challenge_id,
        retries_left=result.retries_left,
        next_retry_at=scalars.DateTime(str(_instant(result.next_retry_at))),
    )


def account_mutations() -> list[StrawberryField]:
    # `strawberry.field(resolver=...)` is typed as its resolver's result, for class bodies.
    fields = [
        strawberry.field(resolver=create_api_key, name="createApiKey"),
        strawberry.field(resolver=revoke_api_key, name="revokeApiKey"),
        strawberry.field(resolver=register, name="register"),
        strawberry.field(resolver=answer_challenge, name="challenge"),
        strawberry.field(resolver=retry_challenge, name="retryChallenge"),
    ]
    return cast("list[StrawberryField]", fields)
