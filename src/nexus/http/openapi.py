"""OpenAPI that says what the platform sends: errors as RFC 9457 problem documents."""

from __future__ import annotations

import json
from typing import Any, Final

from nexus.http.problems import PROBLEM_CONTENT_TYPE

_REF: Final = "#/components/schemas/"

#: JSON Schema of a problem document as `nexus.http.problems` writes it.
PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; members beyond these carry error details.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "default": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
    "additionalProperties": True,
}

#: A 422 problem: the failed checks under `errors`.
VALIDATION_PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "ValidationProblem",
    "description": "A 422 problem document; `errors` lists each invalid part of the request.",
    "allOf": [{"$ref": f"{_REF}Problem"}],
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        }
    },
}

_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Describe every operation's error responses as problem documents, in place.

    FastAPI documents 422 as `application/json` `HTTPValidationError`; the platform answers
    every error, 422 included, with `application/problem+json`. Each operation also gets a
    `default` problem response: any status it does not list (401, 404, 413, 429, 503...) is
    still a problem document.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"{_REF}Problem"}}}
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = _problem_content(response.get("content"), status)
            responses.setdefault(
                "default", {"description": "An error, as a problem document.", "content": problem}
            )
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"{_REF}{unused}"' not in json.dumps(schema):
            components.pop(unused, None)
    return schema


def _problem_content(content: dict[str, Any] | None, status: str) -> dict[str, Any]:
    # A route may document its own problem schema (extensions); keep that, else the generic one.
    declared = (content or {}).get(PROBLEM_CONTENT_TYPE, {})
    if declared.get("schema"):
        return {PROBLEM_CONTENT_TYPE: declared}
    name = "ValidationProblem" if status == "422" else "Problem"
    return {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"{_REF}{name}"}}}
