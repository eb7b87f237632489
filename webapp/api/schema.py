"""The OpenAPI schema declares the error answers too, so that clients (and a fuzzer) know them.

Every operation can answer 400 (a field or the body is invalid), 401 (no or a bad token) and 403
(the token's user lacks the permission); an operation on one object (its path has a parameter)
can answer 404, and so can a paginated list (a page past the end); an operation with a body, 415.
A view declares any other error itself (review ingestion: 413).
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    """The body of a 401, 403, 404 or 413 answer, and of a 400 for a body that is not JSON."""

    detail = serializers.CharField(help_text="Why the request was refused.")

    class Meta:
        ref_name = "ErrorDetail"


# A 400 answer: a list of messages per field (non_field_errors for the request as a whole), or
# one "detail" sentence when the body could not be parsed at all.
VALIDATION_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Messages per invalid field, e.g. {\"text\": [\"The text is empty.\"]}; "
                   "{\"detail\": \"...\"} when the body is not valid JSON.",
    "additionalProperties": {
        "anyOf": [{"type": "array", "items": {}}, {"type": "string"}, {"type": "object"}],
    },
    "example": {"text": ["The text is empty."]},
}

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: the reason is given per field.",
    "401": "No token, or an unknown one: send 'Authorization: Token <key>'.",
    "403": "The token's user lacks the permission for this operation.",
    "404": "No such object (or, for a list, no such page).",
    "415": "The body's content type is not one this operation reads, or its body cannot be read as that type.",
}


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._error_response(code, direction)
        return responses

    def _error_codes(self) -> list[str]:
        codes = ["400", "401", "403"]
        if "{" in self.path or self._is_paginated_list():  # one object (/things/{id}/), or one page of a list
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):  # a body DRF's parsers refuse (e.g. a broken multipart one)
            codes.append("415")
        return codes

    def _is_paginated_list(self) -> bool:
        return self.method == "GET" and self._is_list_view() and self._get_paginator() is not None

    def _error_response(self, code: str, direction) -> dict:
        description = ERROR_DESCRIPTIONS[code]
        if code != "400":
            return {**self._get_response_for_code(ErrorDetailSerializer, code, direction=direction), "description": description}
        component = ResolvedComponent(name="ValidationErrors", type=ResolvedComponent.SCHEMA,
                                      schema=VALIDATION_ERRORS_SCHEMA, object="ValidationErrors")
        self.registry.register_on_missing(component)
        return {"content": {"application/json": {"schema": component.ref}}, "description": description}
