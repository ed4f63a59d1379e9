"""The root of Flowline's exceptions and the JSON error body every HTTP service returns.

    FlowlineError
    ├── NotFound        404: no such process, version, instance or task
    ├── Conflict        409: the state forbids it (edit an approved version, claim a claimed task)
    └── Invalid         422: well-formed but wrong (a graph that fails validation)

Every error answers `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class FlowlineError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code


class NotFound(FlowlineError):
    status = 404
    code = "not_found"


class Conflict(FlowlineError):
    status = 409
    code = "conflict"


class Invalid(FlowlineError):
    status = 422
    code = "invalid"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _message(error: Any) -> Any:
    """A validation error's message; for a body that is not JSON, with the parser's reason."""
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and isinstance(reason, str):
        return f"{error.get('msg')}: {reason}"
    return error.get("msg")


def install_error_handlers(app: FastAPI) -> None:
    """Map every error, including FastAPI's own validation errors, to the JSON error body."""

    @app.exception_handler(FlowlineError)
    async def _flowline(_: Request, exc: FlowlineError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid_request", "request body is invalid", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code)
