"""Named exceptions for expected failures; the gateway maps them to HTTP answers."""

from __future__ import annotations


class DilaError(Exception):
    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(DilaError):
    status_code = 400
    error_type = "invalid_request_error"


class NotFound(DilaError):
    status_code = 404
    error_type = "not_found"


class Conflict(DilaError):
    status_code = 409
    error_type = "conflict"


class Overloaded(DilaError):
    """Admission refused: the pool queue is over its bound (or the deadline is infeasible)."""

    status_code = 429
    error_type = "overloaded"

    def __init__(self, message: str, *, reason: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class Unavailable(DilaError):
    status_code = 503
    error_type = "unavailable"


class Unauthorized(DilaError):
    status_code = 401
    error_type = "authentication_error"


class WorkerLost(DilaError):
    pass


class PlanInfeasible(DilaError):
    pass
