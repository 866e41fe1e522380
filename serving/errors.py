"""One error shape for every endpoint (api.md): {"error": {"code", "message", "details"}}.

Expected errors (ApiError, MoneyError, validation, HTTPException, ClientDisconnect) are handled by
Starlette's ExceptionMiddleware, inside the app's middleware. Anything else reaches the catch-all
handler for `Exception`, which Starlette hands to its ServerErrorMiddleware, the outermost layer:
it answers 500 `internal_error` in the same shape (nothing of the exception leaks), logs the
traceback to `clearhouse.api`, and then Starlette re-raises the exception, so the server logs it
too and `TestClient` raises it unless made with `raise_server_exceptions=False`. Being outside the
middleware, that response skips RequestContextMiddleware: the handler adds X-Request-Id itself.

A database that could not serve the request in time - a lock not granted within
Settings.db_lock_timeout_ms, a deadlock victim, a serialization failure, SQLite's write lock
still held - is not a bug: the request's transaction was rolled back whole, and sending it again
is the cure. Those answer 503 `database_busy` with Retry-After (handlers for SQLAlchemy's
DBAPIError and, on Postgres, psycopg's own errors, which the fast paths raise).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from serving.observability import REQUEST_ID_SCOPE_KEY
from warehouse.money import MoneyError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}
        self.headers = headers  # extra response headers (Retry-After on a 429)


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "resource_missing", f"no {kind} with id {ident!r}", {"id": ident})


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# Postgres SQLSTATEs after which the whole transaction was rolled back and a retry is the cure.
_RETRYABLE_SQLSTATES = {
    "55P03": "a lock was not granted in time",  # lock_not_available (lock_timeout)
    "40P01": "deadlock detected",
    "40001": "serialization failure",
}
RETRY_AFTER_SECONDS = 1


def database_busy(exc: BaseException) -> str | None:
    """Why the database could not serve the request now, or None if `exc` is another error."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    reason = _RETRYABLE_SQLSTATES.get(getattr(orig, "sqlstate", None) or "")
    if reason is None and isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
        reason = "the database is locked by another writer"
    return reason


def _busy_response(request: Request, reason: str) -> JSONResponse:
    log.warning("database busy on %s %s: %s", request.method, request.url.path, reason,
                extra={"fields": {"method": request.method, "path": request.url.path}})
    message = (f"the database is busy ({reason}); the request's changes were rolled back: "
               f"send it again (with the same Idempotency-Key) in {RETRY_AFTER_SECONDS} s")
    return JSONResponse(error_body("database_busy", message, {"reason": reason}),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _field_path(loc: tuple) -> str:
    """"amount_minor", "customer.ip", "limit"; "body" for the body as a whole (missing, or not
    a JSON object), so a 422 always names what to fix."""
    field = ".".join(str(p) for p in loc if p not in ("body", "query", "path", "header"))
    return field or ("body" if loc[:1] == ("body",) else "")


def _declared_media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _sent_a_body(request: Request) -> bool:
    """The request carried a body (its headers say so; the body itself was read already)."""
    length = request.headers.get("content-length", "")
    return (length.isdigit() and int(length) > 0) or "transfer-encoding" in request.headers


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json"))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app takes for this request's path."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in routes)]


# Why FastAPI could not read a JSON body other than a syntax error (see _http below).
UNREADABLE_JSON = (UnicodeDecodeError, RecursionError)


def _invalid_json(reason: str, position: int | None) -> JSONResponse:
    """422 invalid_json naming the body (api.md: 422 with the offending field in details)."""
    where = f" at character {position}" if position is not None else ""
    message = f"the request body is not valid JSON ({reason}{where})"
    details: dict[str, Any] = {"field": "body",
                               "errors": [{"field": "body", "message": message}]}
    if position is not None:
        details["position"] = position
    return JSONResponse(error_body("invalid_json", f"body: {message}", details), status_code=422)


# nginx's code for "the client closed the request": logged, never sent (nobody is listening).
CLIENT_CLOSED_REQUEST = 499
log = logging.getLogger("clearhouse.api")


def install_error_handlers(app: FastAPI, *, postgres: bool = False) -> None:
    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _exc: ClientDisconnect):
        # The caller hung up before its body was read: nothing was done for it, so there is
        # nothing to undo, and a traceback per dropped connection would bury real errors.
        log.info("client disconnected before its request body was read",
                 extra={"fields": {"method": request.method, "path": request.url.path}})
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(MoneyError)
    async def _money_error(_request: Request, exc: MoneyError):
        return JSONResponse(error_body(exc.code, str(exc)), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        media_type = _declared_media_type(request)
        undeclared = not media_type and _sent_a_body(request)
        if ((media_type and not _is_json(media_type)) or undeclared) and any(
                tuple(e.get("loc", ()))[:1] == ("body",) for e in errors):
            # FastAPI reads a body as JSON only when it is declared so; anything else (or a body
            # with no Content-Type at all) arrives as bytes and fails as "not an object", which
            # hides the cause (curl -d sends application/x-www-form-urlencoded unless told
            # otherwise; requests' data= sends no Content-Type).
            declared = f"declared {media_type}" if media_type else "declared no Content-Type"
            message = (f"the request body must be JSON sent with Content-Type: application/json "
                       f"(this request {declared})")
            return JSONResponse(error_body("unsupported_media_type", message,
                                           {"field": "body", "content_type": media_type or None}),
                                status_code=415)
        if first.get("type") == "json_invalid":
            # The body is not JSON: its loc is ("body", <character offset>), and the offset is
            # where parsing stopped, not a field.
            loc = tuple(first.get("loc", ()))
            position = loc[-1] if loc and isinstance(loc[-1], int) else None
            reason = (first.get("ctx") or {}).get("error") or "malformed"
            return _invalid_json(reason, position)
        field = _field_path(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        code = (first.get("ctx") or {}).get("code") or "validation_error"
        problems = [{"field": _field_path(tuple(e.get("loc", ()))),
                     "message": str(e.get("msg", "")).removeprefix("Value error, ")} for e in errors]
        return JSONResponse(
            error_body(code, f"{field}: {message}" if field else message,
                       {"field": field, "errors": problems}),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and isinstance(exc.__cause__, UNREADABLE_JSON):
            # FastAPI's "There was an error parsing the body" (400, no field): bytes that are
            # not UTF-8, or JSON nested deeper than the parser goes. Malformed JSON all the same.
            reason = ("not UTF-8 text" if isinstance(exc.__cause__, UnicodeDecodeError)
                      else "nested too deeply")
            return _invalid_json(reason, None)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route whose path matched; a path
            # served by several routes (GET and POST /payments) takes all of them (RFC 9110).
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers or None)

    async def _database_error(request: Request, exc: Exception):
        reason = database_busy(exc)
        if reason is not None:
            return _busy_response(request, reason)
        raise exc  # not ours to answer: the catch-all below logs it and answers 500

    app.add_exception_handler(DBAPIError, _database_error)
    if postgres:  # the fast paths run psycopg directly (imported only where Postgres is used)
        import psycopg

        app.add_exception_handler(psycopg.Error, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Runs in ServerErrorMiddleware, after RequestContextMiddleware has finished: the request
        # id comes from the scope, where that middleware left it.
        request_id = request.scope.get(REQUEST_ID_SCOPE_KEY)
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__),
                  extra={"fields": {"method": request.method, "path": request.url.path,
                                    **({"request_id": request_id} if request_id else {})}})
        message = "an unexpected error occurred; it has been logged" + (
            f" (request id {request_id})" if request_id else "")
        response = JSONResponse(error_body("internal_error", message), status_code=500)
        if request_id:  # as RequestContextMiddleware writes it (raw bytes, any client's text)
            response.raw_headers.append((b"x-request-id", request_id.encode()))
        return response
