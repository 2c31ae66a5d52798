"""The gateway's REST framing: a signed request (X-OS-KEY, X-OS-TIMESTAMP, X-OS-SIGNATURE over the
path and body as sent) to an operation, its answer or error as JSON, the request id in X-Request-Id,
one access-log line per request, and aiohttp's own refusals in the API's error shape."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from orderstream.gateway import payload
from orderstream.gateway.core import GATEWAY
from orderstream.gateway.errors import ApiError

log = logging.getLogger(__name__)
ACCESS = logging.getLogger("orderstream.gateway.access")

REQUESTS = Counter("orderstream_gateway_requests", "API requests", ["method", "code"])


def rest(
    op: Callable[..., Awaitable[dict[str, Any]]],
    name: str,
    *,
    body: bool,
    path_param: str | None = None,
    query: bool = False,
    with_request_id: bool = True,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The REST handler of operation `name` (its OpenAPI operationId and WebSocket method)."""

    async def handler(request: web.Request) -> web.Response:
        gw = request.app[GATEWAY]
        request_id = request_id_of(request)
        raw = await request.read()
        try:
            who = await gw.verifier.verify(
                request.headers.get("X-OS-KEY"),
                request.headers.get("X-OS-TIMESTAMP"),
                request.headers.get("X-OS-SIGNATURE"),
                request.method,
                request.raw_path,  # the path and query as sent (percent-encoded), as the client signed them
                raw,
            )
            params: Any = {}
            if body:  # an empty body is no object: 40001
                params = payload.loads(raw, gw.settings.max_json_depth, "body") if raw else None
            if path_param and isinstance(params, dict):
                params = {**params, path_param: request.match_info[path_param]}
            if query:
                params = dict(request.query)
            args = (gw, who, params, request_id) if with_request_id else (gw, who, params)
            result = await op(*args)
            REQUESTS.labels(route(request), "0").inc()
            return web.json_response(result, headers={"X-Request-Id": request_id})
        except ApiError as e:
            error = e
        except Exception as exc:  # answered with its documented code, never a bare 500
            error = failed(name, exc, request_id)
        REQUESTS.labels(route(request), str(error.code)).inc()
        log.info(
            "request refused", extra={"request_id": request_id, "code": error.code, "path": request.path}
        )
        return web.json_response(
            {"error": error.body()},
            status=error.status,
            headers={"X-Request-Id": request_id, **error.headers},
        )

    return handler


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id if short printable ASCII (it goes into headers and logs), else a new one."""
    given = request.headers.get("X-Request-Id", "")
    return given if 0 < len(given) <= 128 and given.isascii() and given.isprintable() else uuid.uuid4().hex


def failed(op: str, exc: Exception, request_id: str) -> ApiError:
    """An exception of an operation (not an ApiError) as the documented error its client gets, logged with the
    request id: an order not confirmed (50001), MongoDB or Kafka failing (50002), else a bug (50000)."""
    if op in ORDER_OPS:
        error = ApiError(
            50001,
            "the order could not be confirmed; send it again with the same client_order_id "
            "(a repeat is never a second order)",
            status=503,
        )
    elif isinstance(exc, UNAVAILABLE):
        error = ApiError(50002, "MongoDB or Kafka did not answer or refused; try again", status=503)
    else:
        error = ApiError(50000, "internal error; it is logged with the request id", status=500)
    error.details["request_id"] = request_id
    log.error(
        "request failed",
        exc_info=exc,
        extra={"request_id": request_id, "operation": op, "code": error.code, "error": repr(exc)},
    )
    return error


# a failure is 50001: the client sends the order again
ORDER_OPS = frozenset(
    {"order.place", "order.basket", "order.oco", "order.bracket", "order.algo", "order.index"}
)
UNAVAILABLE = (PyMongoError, KafkaError, ConnectionError, TimeoutError)


def route(request: web.Request) -> str:
    """The route's template (`/api/v1/orders/{order_id}`): a bounded label, unlike the path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


@web.middleware
async def access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One JSON log line per HTTP request (a WebSocket's when it closes), with the request id the command
    carried in its `x-request-id` header; never the signature or a secret."""
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.path not in ("/healthz", "/metrics"):
            ACCESS.info(
                "http request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route(request),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": response.headers.get("X-Request-Id") if response is not None else None,
                    "key": request.headers.get("X-OS-KEY"),
                    "remote": request.remote,
                },
            )


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no such route, method not allowed, body too large) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_ERRORS.get(exc.status, (exc.status * 100, exc.reason))
        REQUESTS.labels(route(request), str(code)).inc()
        return web.json_response(
            {"error": ApiError(code, message).body()},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k == "Allow"},
        )


HTTP_ERRORS = {
    404: (40400, "no such route"),
    405: (40500, "method not allowed on this route"),
    413: (41301, "body too large"),
}
