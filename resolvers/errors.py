"""The gateway's transport-free error tree.

    GatewayError              never raised directly
    ├── Invalid               bad input; `errors` lists (field, message)
    ├── Unauthenticated       no valid credentials
    ├── Forbidden             known principal without the right
    ├── NotFound
    ├── Conflict              e.g. a unique property already taken
    ├── Gone
    ├── RateLimited           `retry_after` seconds
    ├── TooLarge              an upload over the size limit (`limit` bytes)
    ├── UnsupportedType       a content type a file property does not accept
    └── Unavailable           a dependency cannot serve now; `retry_after` seconds
    TenantFileError           the tenant file is refused (not a request error)

`rest/` maps the request errors to problem+json once; `schema/` to GraphQL
errors with `extensions.code` once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Conflict",
    "FieldError",
    "Forbidden",
    "GatewayError",
    "Gone",
    "Invalid",
    "NotFound",
    "RateLimited",
    "TenantFileError",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedType",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class GatewayError(Exception):
    """Base of every error a resolver reports to a client; never raised directly."""

    code = "error"
    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(GatewayError):
    code = "invalid"
    title = "Invalid input"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Unauthenticated(GatewayError):
    code = "unauthenticated"
    title = "Not authenticated"


class Forbidden(GatewayError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(GatewayError):
    code = "not_found"
    title = "Not found"


class Conflict(GatewayError):
    code = "conflict"
    title = "Conflict"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Gone(GatewayError):
    code = "gone"
    title = "Gone"


class RateLimited(GatewayError):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TooLarge(GatewayError):
    code = "too_large"
    title = "Content too large"

    def __init__(self, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.limit = limit


class UnsupportedType(GatewayError):
    code = "unsupported_media_type"
    title = "Unsupported media type"

    def __init__(self, detail: str, field: str, accepted: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.field = field
        self.accepted = accepted


class Unavailable(GatewayError):
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class DeliveryFailed(GatewayError):
    """A challenge's message could not be handed over; the challenge stays retryable."""

    code = "delivery_failed"
    title = "Delivery failed"

    def __init__(self, detail: str, challenge_id: str) -> None:
        super().__init__(detail)
        self.challenge_id = challenge_id


class TenantFileError(Exception):
    """The tenant file is refused; `problems` holds every `file:key.path: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
