from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth import middleware as _auth
from django.contrib.messages import middleware as _messages
from django.contrib.sessions import middleware as _session
from django.http import JsonResponse

from core.errors import not_found_view


class RejectNulBytesMiddleware:
    """Refuse a NUL byte anywhere in the path or query string with a 400.

    PostgreSQL text cannot hold NUL, so such a value would otherwise reach a filter or a search
    and fail deep inside the driver. Request bodies are covered by DRF's CharField, which
    refuses NUL already."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or "\x00" in unquote(request.META.get("QUERY_STRING", "")):
            return JsonResponse({"detail": "NUL bytes are not allowed in URLs.", "code": "invalid"}, status=400)
        return self.get_response(request)


class JsonContentTypeOnEmptyResponses:
    """Give an empty API answer (a 204) the JSON content type that every other answer has.

    The schema promises `produces: application/json` for every operation (Swagger 2.0 cannot say
    "except for this status"), and DRF drops the header when there is no body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 204 and not response.has_header("Content-Type"):
            response["Content-Type"] = "application/json"
        return response


class RequestBodyLimitMiddleware:
    """Refuse a body larger than MAX_REQUEST_BODY_BYTES with 413, in the error shape, before reading it.

    DRF's JSON parsing reads the request stream whatever its size (Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    guards form parsing and `request.body` only), so the cap is taken from the declared length here,
    for every endpoint. Django's WSGI request reads no more than that length either."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads such a body as empty
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length > limit:
            return JsonResponse(
                {"detail": f"The request body is larger than {limit} bytes.", "code": "request_too_large"},
                status=413,
            )
        return self.get_response(request)


class ApiNotFoundAsJson:
    """An unknown `/api/...` path answers 404 in the project's error shape (`detail`, `code`), also
    with DEBUG on, where Django would answer its HTML debug page. Listed before CommonMiddleware, so
    a path missing its slash is still redirected first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return not_found_view(request)
        return response


class SkippedOffTheBrowser:
    """Mixed into the session, authentication and message middleware: they run only on the paths a
    browser uses with a session cookie (SESSION_PATHS: the Django admin, the API documentation).
    Every other path is the API, authenticated by a Bearer token in DRF, so it never reads the
    session, `request.user` before DRF, or messages; skipping their machinery there is a measured
    share of a balance read's CPU (bench/README.md). Subclasses, so that Django's admin checks still
    find them in MIDDLEWARE. CSRF stays Django's own everywhere (`check --deploy` asks for it by
    name; DRF's views are exempt from it, so it costs the API little)."""

    def __call__(self, request):
        if request.path_info.startswith(settings.SESSION_PATHS):
            return super().__call__(request)
        return self.get_response(request)


class SessionMiddleware(SkippedOffTheBrowser, _session.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkippedOffTheBrowser, _auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkippedOffTheBrowser, _messages.MessageMiddleware):
    pass
