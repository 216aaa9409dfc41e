"""Domain errors and the one place that maps every error to an HTTP answer.

Services raise `DomainError` subclasses; views never build an error response by hand. Every
error body carries `detail` (for people) and `code` (stable, for programs); validation errors add
`errors: {field: [messages]}`.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.db import DataError, Error, InterfaceError, OperationalError, connection, transaction
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# PostgreSQL SQLSTATEs after which the same request, sent again, will very likely succeed.
RETRYABLE_PGCODES = {
    "55P03": "lock_not_available",
    "57014": "query_canceled",  # statement_timeout
    "40P01": "deadlock_detected",
    "40001": "serialization_failure",
}


# Every DomainError code, to the one class that defines it (subclasses that keep their parent's code
# share it). A second class claiming a code fails at import: a client's `code` means one thing.
ERROR_CODES: dict[str, type] = {}


class DomainError(Exception):
    """A business refusal. Subclasses set a stable `code`, a default message and an HTTP status."""

    code = "error"
    message = "The request was refused."
    status_code = status.HTTP_400_BAD_REQUEST
    # Context keys also put in the error body, for programs (e.g. the id of the record refused against).
    body_fields = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return  # keeps its parent's code (a variant of the same refusal, or a mixin)
        owner = ERROR_CODES.setdefault(cls.code, cls)
        if (owner.__module__, owner.__qualname__) == (cls.__module__, cls.__qualname__):
            ERROR_CODES[cls.code] = cls  # the same class, its module imported again
        elif not issubclass(cls, owner):
            raise TypeError(
                f"Error code {cls.code!r} of {cls.__module__}.{cls.__qualname__} is already "
                f"{owner.__module__}.{owner.__qualname__}'s: subclass it or choose another code."
            )

    def __init__(self, message=None, *, field=None, **context):
        template = message or type(self).message
        self.message = template.format(**context) if context else template
        self.field = field
        self.context = context
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    message = "Not found."
    status_code = status.HTTP_404_NOT_FOUND


class PermissionRefused(DomainError):
    code = "permission_denied"
    message = "You do not have permission to perform this action."
    status_code = status.HTTP_403_FORBIDDEN


class Conflict(DomainError):
    code = "conflict"
    message = "The request conflicts with the current state."
    status_code = status.HTTP_409_CONFLICT


class TryAgain(DomainError):
    code = "try_again"
    message = "The service is busy; retry the request in a moment."
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class OutcomeUnknown(DomainError):
    """The connection died at COMMIT: the change may or may not have been saved. Never answered as
    "nothing was changed", which would send a client to do it again."""

    code = "outcome_unknown"
    message = (
        "The database connection was lost while the request was being saved: it may or may not have "
        "taken effect. Retry with the same Idempotency-Key to get its outcome."
    )
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class DatabaseUnavailable(DomainError):
    """The database went away before this request's commit (or its commit is known to have rolled
    back): nothing was changed, and the same request may simply be sent again."""

    code = "database_unavailable"
    message = "The database is unavailable; nothing was changed. Retry the request."
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    retry_after = 1


def raised_at_commit(exc) -> bool:
    """Whether `exc` came out of a database COMMIT (so the commit may have landed)."""
    traceback = exc.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        if code.co_name in ("commit", "_commit") and code.co_filename.endswith(
            ("db/backends/base/base.py", "db\\backends\\base\\base.py")
        ):
            return True
        traceback = traceback.tb_next
    return False


def _error(detail, code, http_status, *, errors=None, headers=None, extra=None):
    body = {"detail": str(detail), "code": code}
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    return Response(body, status=http_status, headers=headers)


def _first_code(detail):
    """The code of the first error in a DRF ErrorDetail tree."""
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_code(value)
    if isinstance(detail, list):
        return _first_code(detail[0]) if detail else "invalid"
    return getattr(detail, "code", None) or "invalid"


def _field_errors(detail):
    if isinstance(detail, dict):
        return {key: _messages(value) for key, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value):
    if isinstance(value, dict):
        return {key: _messages(inner) for key, inner in value.items()}
    if isinstance(value, list):
        if any(isinstance(item, (dict, list)) for item in value):
            return [_messages(item) for item in value]
        return [str(item) for item in value]
    return [str(value)]


def _database_error_response(exc):
    pgcode = getattr(getattr(exc, "__cause__", None), "pgcode", None) or getattr(exc, "pgcode", None)
    retry = {"Retry-After": "1"}
    if pgcode in RETRYABLE_PGCODES:
        logger.warning("retryable database error %s: %s", RETRYABLE_PGCODES[pgcode], exc)
        return _error(TryAgain.message, TryAgain.code, 503, headers=retry)
    if raised_at_commit(exc):
        logger.error("database connection lost at COMMIT, outcome unknown: %s", exc)
        return _error(OutcomeUnknown.message, OutcomeUnknown.code, 503, headers=retry)
    if isinstance(exc, (InterfaceError, OperationalError)):
        # The connection went away (restart, failover, pg_terminate_backend) before this request's
        # commit (one at COMMIT is answered above): nothing was committed; Django reconnects.
        logger.error("database unavailable: %s", exc)
        return _error(DatabaseUnavailable.message, DatabaseUnavailable.code, 503, headers=retry)
    return None


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error gets `detail` and `code`, and the request's
    transaction (if a view opened one) is rolled back so a refusal never leaves half a write."""
    response = _response_for(exc)
    # Like DRF's own handler: only a request-wide transaction (ATOMIC_REQUESTS) is marked here.
    # Marking any open block would also poison an enclosing one the view does not own (a test's
    # transaction, a caller's atomic): its next query fails with TransactionManagementError.
    if response is not None and connection.settings_dict.get("ATOMIC_REQUESTS") and connection.in_atomic_block:
        transaction.set_rollback(True)
    return response


def _response_for(exc):
    if isinstance(exc, DomainError):
        errors = {exc.field: [exc.message]} if exc.field else None
        # A refusal that lifts by itself (a cooldown) says when, like DRF's throttles.
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after is not None else None
        extra = {name: exc.context[name] for name in exc.body_fields if name in exc.context}
        return _error(exc.message, exc.code, exc.status_code, errors=errors, headers=headers, extra=extra)
    if isinstance(exc, Http404):
        return _error("Not found.", "not_found", 404)
    if isinstance(exc, DjangoPermissionDenied):
        return _error(exceptions.PermissionDenied.default_detail, "permission_denied", 403)
    if isinstance(exc, exceptions.ValidationError):
        return _error("Invalid input.", _first_code(exc.detail), 400, errors=_field_errors(exc.detail))
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait) if exc.wait >= 1 else 1)
        detail = exc.detail
        code = None
        if isinstance(detail, dict):
            code = detail.get("code")
            detail = detail.get("detail", next(iter(detail.values()), exc.default_detail))
        code = str(code or getattr(detail, "code", None) or exc.default_code)
        if isinstance(exc, exceptions.NotAuthenticated):
            code = "not_authenticated"
        return _error(detail, code, exc.status_code, headers=headers)
    if isinstance(exc, SuspiciousOperation):
        return _suspicious_operation_response(exc, _error)
    if isinstance(exc, OverflowError):
        # A number too large for the database (SQLite integers are 64-bit), e.g. ?parent=10**30.
        return _error("A number in the request is out of range.", "invalid", 400)
    if isinstance(exc, DataError):
        return _error("A value is out of range or malformed.", "invalid", 400)
    if isinstance(exc, Error):  # InterfaceError ("connection already closed") is no DatabaseError
        return _database_error_response(exc)
    return None


def _suspicious_operation_response(exc, build):
    """A body Django refuses to parse (too large, too many fields or files) or another request Django
    finds suspicious: a 4xx in the error shape, never a 500."""
    if isinstance(exc, RequestDataTooBig):
        return build("The request body is too large.", "request_too_large", 413)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return build(f"Malformed request body: {exc}", "parse_error", 400)
    return build("Bad request.", "bad_request", 400)


def bad_request_view(request, exception=None):
    """handler400: what Django itself refuses outside DRF (the admin's forms, a suspicious request)."""
    return _suspicious_operation_response(exception, _json_error)


def _json_error(detail, code, http_status):
    return JsonResponse({"detail": detail, "code": code}, status=http_status)


def not_found_view(request, exception=None):
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def server_error_view(request):
    return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
