"""OpenAPI 3.1 generated from the route table and the very pydantic models the handlers use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .ratelimit import is_limited_path
from .routing import Route, path_params
from .schemas.common import ErrorBody

REF = "#/components/schemas/{model}"
_COMMON_ERRORS = (400, 413, 422)
_REASONS = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid bearer token",
    404: "Not found (or not yours)",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Rate limit exceeded (see Retry-After)",
    502: "Upstream (LiveKit) error",
    503: "Service unavailable",
}


def build(routes: list[Route], *, version: str, title: str = "VoxArena API") -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for r in routes:
        for m in (r.response, r.body):
            if m is not None:
                models.add(m)
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for m in sorted(models, key=lambda m: m.__name__):
        pairs.append((m, "serialization"))
        if any(r.body is m for r in routes):
            pairs.append((m, "validation"))
    refs, top = models_json_schema(pairs, ref_template=REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": [],
            "responses": {},
        }
        for name in path_params(r.path):
            op["parameters"].append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
        if r.query is not None:
            qschema = r.query.model_json_schema(ref_template=REF)
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                prop = dict(prop)
                prop.pop("title", None)
                variants = prop.get("anyOf")
                if variants and len(variants) == 2 and {"type": "null"} in variants:
                    # a query parameter is absent, never null
                    prop.pop("anyOf")
                    prop.update(next(v for v in variants if v != {"type": "null"}))
                    if prop.get("default") is None:
                        prop.pop("default", None)
                desc = prop.pop("description", None)
                param = {"name": name, "in": "query", "required": name in required, "schema": prop}
                if desc:
                    param["description"] = desc
                op["parameters"].append(param)
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.body, "validation")}},
            }
        if r.response is not None:
            schema: dict[str, Any] = ref(r.response)
            if r.many:
                schema = {"type": "array", "items": schema}
            if r.nullable:
                schema = {"anyOf": [schema, {"type": "null"}]}
            for status in (r.status, *r.also):
                op["responses"][str(status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": schema}},
                }
        else:
            for status in (r.status, *r.also):
                op["responses"][str(status)] = {"description": "OK"}
        codes = set(r.errors) | set(_COMMON_ERRORS)
        if r.seed_errors:  # 004 answers invalid input with 400
            codes.discard(422)
        if not r.public:
            codes.add(401)
            op["security"] = [{"bearerAuth": []}]
        else:
            op["security"] = []
        if path_params(r.path):
            codes.add(404)
        if is_limited_path(r.path):
            codes.add(429)
        for code in sorted(codes):
            op["responses"][str(code)] = {
                "description": _REASONS.get(code, "Error"),
                "content": {"application/json": {"schema": ref(ErrorBody)}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
        if r.method == "PUT":
            patch = dict(op, operationId=op["operationId"] + "_patch", summary=op["summary"] + " (partial)")
            paths[r.path]["patch"] = patch
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearerAuth": []}],
    }
