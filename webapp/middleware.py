"""Project-wide request checks, before any view or admin code sees the request."""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse, JsonResponse

NUL = "\x00"


def has_nul(value) -> bool:
    """Whether a NUL character is anywhere in a parsed JSON value or a string (keys included)."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


class RefuseNulMiddleware:
    """A NUL character in the query string or a url-encoded form is a 400 with a reason.

    PostgreSQL cannot hold NUL in a text value, not even as a query parameter: every filter, lookup
    and search that passed one on would end in a 500. Texts that are stored are cleaned of control
    characters where they come in (labeling.services.clean_text); a NUL in a parameter names
    nothing that exists. Multipart bodies (the import's files) are not read here."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._nul_in_request(request):
            message = "A request parameter holds a NUL character (\\0), which no stored value can contain."
            if request.path.startswith("/api/") or request.content_type == "application/json":
                return JsonResponse({"detail": message}, status=400)
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    @staticmethod
    def _nul_in_request(request: HttpRequest) -> bool:
        pairs = parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True)
        if any(NUL in key or NUL in value for key, value in pairs):
            return True
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            return any(NUL in key or any(NUL in value for value in values) for key, values in request.POST.lists())
        return False
