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
        names = self._parameters_with_nul(request)
        if names:
            message = "must not hold a NUL character (\\0): no stored value can contain one."
            if request.path.startswith("/api/"):  # the API's error shape: each field with its messages
                return JsonResponse({name: [message] for name in names}, status=400)
            return HttpResponse(f"{', '.join(names)}: {message}", status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    @staticmethod
    def _parameters_with_nul(request: HttpRequest) -> list[str]:
        pairs = parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            pairs += [(key, value) for key, values in request.POST.lists() for value in values]
        names = {(key.replace(NUL, "\\0") or "parameter") for key, value in pairs if NUL in key or NUL in value}
        return sorted(names)[:20]
