"""Domain errors. Pure code raises these; `shared.http` turns them into problem+json answers.

Messages are shown to the caller: they name ids and fields, never clinical content.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class InvalidInput(DomainError):
    status = 422
    title = "Unprocessable Content"


class MalformedBody(InvalidInput):
    """A body that is not JSON as the service reads it: nothing in it could be looked at."""

    status = 400
    title = "Bad Request"


class NotAuthenticated(DomainError):
    status = 401
    title = "Unauthorized"


class PermissionDenied(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not Found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Gone(DomainError):
    status = 410
    title = "Gone"


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition Failed"


def describe_error(err: BaseException) -> str:
    """Exception class and first line of its message, for logs and the DLQ.

    SQLAlchemy appends the statement's parameters to its messages; its `orig` does not.
    """
    cause = getattr(err, "orig", None) or err
    lines = str(cause).splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:500]
