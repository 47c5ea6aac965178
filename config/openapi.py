"""The two OpenAPI schemas (DRF's through drf-spectacular, django-ninja's own): what both document alike."""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "code": {"type": "string", "description": "The kind of error, for programs."},
        "details": {"type": "object", "description": "More about it (the fields, the files, the limit)."},
    },
}
ERROR_STATUSES = {
    400: "The request is malformed.",
    401: "No valid token or session: send `Authorization: Token <key>`.",
    403: "The account may not do this.",
    404: "Not found, or not visible to this account.",
    409: "The request conflicts with the current state.",
    413: "The request or a file in it is over the size limit.",
    422: "The input is not valid (the reason names the field).",
    429: "Too many requests: wait for `Retry-After` seconds.",
    503: "A service the request needs (database, language model) is unavailable or busy.",
}


# The OpenAI-compatible endpoints answer errors as OpenAI's API does, which OpenAI SDKs read.
OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def document_error_responses(
    schema: dict[str, Any], *, component_path: str = "#/components/schemas/", openai_prefix: str = ""
) -> dict[str, Any]:
    """Every operation of an OpenAPI schema documents the error statuses it may answer with, in the one error
    shape (OpenAI's under `openai_prefix`); responses an operation documents itself are kept."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    if openai_prefix:
        components["OpenAIError"] = OPENAI_ERROR_SCHEMA
    for path_name, path in schema.get("paths", {}).items():
        shape = "OpenAIError" if openai_prefix and path_name.startswith(openai_prefix) else "Error"
        content = {"application/json": {"schema": {"$ref": f"{component_path}{shape}"}}}
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            documented = {str(status) for status in responses}
            for status, description in ERROR_STATUSES.items():
                if str(status) not in documented:
                    responses[str(status)] = {"description": description, "content": content}
    return schema


def spectacular_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook for document_error_responses."""
    return document_error_responses(result)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, which documents every list response of a paginated view as a page; only GET
    lists are paged (an upload answers a plain array, one item per file)."""

    def _get_paginator(self) -> Any:
        return super()._get_paginator() if self.method == "GET" else None
