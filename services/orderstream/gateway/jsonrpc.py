"""The gateway's WebSocket framing (/ws, JSON-RPC style): one JSON object per text frame
`{"id", "method", "params"}` answered by `{"id", "result"}` or `{"id", "error"}`; `auth.login` once per
connection (a signature of `GET /ws`), `subscribe` / `unsubscribe` for the streams (streams.py), and
the operations of the other rooms. Orders are pipelined: each is queued for the broker in frame order
and answered when sent, while later frames are read (up to PIPELINE_DEPTH per connection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from orderstream.gateway import api, payload
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import GATEWAY, parse
from orderstream.gateway.errors import ApiError
from orderstream.gateway.orders import OrderEntry
from orderstream.gateway.reads import Reads
from orderstream.gateway.rest import REQUESTS, failed
from orderstream.gateway.streams import Connection

if TYPE_CHECKING:
    from orderstream.gateway.app import Gateway


Reply = dict[str, Any] | str  # an answer frame, or its JSON text
Answerer = Callable[[Any, Any, str], Awaitable[Reply | Awaitable[Reply]]]


def websocket_endpoint(
    answer_frame: Answerer, connection: Callable[[web.WebSocketResponse, int], Connection]
) -> Callable[[web.Request], Awaitable[web.WebSocketResponse]]:
    """A WebSocket route: each text frame answered by `answer_frame(gateway, connection, text)`, at once
    or (an awaitable: an order queued for the broker) when it is sent, while later frames are read."""

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, answer_frame, connection)

    return websocket


async def serve(
    request: web.Request,
    answer_frame: Answerer,
    connection: Callable[[web.WebSocketResponse, int], Connection],
) -> web.WebSocketResponse:
    gw = request.app[GATEWAY]
    ws = web.WebSocketResponse(heartbeat=gw.settings.ws_heartbeat_s, max_msg_size=0)
    await ws.prepare(request)
    conn = connection(ws, gw.settings.ws_send_queue)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    conn.push(error_frame(None, "(unknown)", ApiError(40002, "frames must be JSON text")))
                continue
            reply = await answer_frame(gw, conn, msg.data)
            if isinstance(reply, dict | str):
                if not conn.push(reply):
                    await gw._drop_slow(conn)  # its replies pile up unread: same as a slow stream
            else:  # an order queued for the broker: answered when it is sent, while later frames are read
                await conn.in_flight.acquire()
                task = asyncio.get_running_loop().create_task(deliver(gw, conn, reply))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
    finally:
        gw._forget(conn)
        conn.close()
    return ws


async def deliver(gw: Gateway, conn: Connection, reply: Awaitable[Reply]) -> None:
    try:
        frame = await reply
    finally:
        conn.in_flight.release()
    if not conn.push(frame):
        await gw._drop_slow(conn)


async def pipelined(
    rid: Any, method: str, request_id: str, pending: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    try:
        frame = {"id": rid, "result": await pending}
        count(method, 0)
        return frame
    except Exception as exc:  # not written: the order was not accepted, and the client hears so
        return error_frame(rid, method, failed(method, exc, request_id))


def count(method: str, code: int) -> None:
    """A WebSocket answer in /metrics, by method (a bounded label: unknown ones are one) and code."""
    REQUESTS.labels(method if method in KNOWN_METHODS else "(unknown)", str(code)).inc()


def error_frame(rid: Any, method: str, e: ApiError) -> dict[str, Any]:
    count(method, e.code)
    return {"id": rid, "error": e.body()}


async def answer(gw: Gateway, conn: Connection, text: str) -> dict[str, Any] | Awaitable[dict[str, Any]]:
    rid, method, request_id = None, "(unknown)", uuid.uuid4().hex
    try:
        frame = read_frame(gw, text)
        rid, params = frame.get("id"), frame.get("params", {})
        method = method_of(frame)
        if method == "auth.login":
            if not isinstance(params, dict):
                raise ApiError(40001, "invalid params: must be an object", {"field": "params"})
            who = await gw.verifier.verify(
                params.get("key"),
                str(params.get("timestamp", "")),
                params.get("signature"),
                "GET",
                "/ws",
                b"",
            )
            gw.log_in(conn, who)
            count(method, 0)
            return {
                "id": rid,
                "result": {"account_id": who.account_id, "permissions": sorted(who.permissions)},
            }
        if method not in KNOWN_METHODS:
            raise ApiError(
                40003, f"unknown method {method}", {"method": method, "known": sorted(KNOWN_METHODS)}
            )
        if conn.principal is None:
            raise ApiError(40100, "log in first (auth.login)", status=401)
        if method in PIPELINED:
            pending = await PIPELINED[method](gw, conn.principal, params, request_id)
            return pipelined(rid, method, request_id, pending)
        if method == "subscribe" or method == "unsubscribe":
            result = subscription(gw, conn, method, params)
        else:
            result = await WS_METHODS[method](gw, conn.principal, params, request_id)
        count(method, 0)
        return {"id": rid, "result": result}
    except ApiError as e:
        return error_frame(rid, method, e)
    except Exception as exc:  # the client hears what failed; the connection stays
        return error_frame(rid, method, failed(method, exc, request_id))


def read_frame(gw: Gateway, text: str, *, exact: bool = False) -> dict[str, Any]:
    """A request frame's JSON object (`exact`: see payload.loads); 41301 when larger than the gateway
    takes, 40002 when not JSON, 40004 when nested too deep, 40001 when not an object."""
    if len(text.encode(errors="replace")) > gw.settings.max_frame_bytes:
        raise ApiError(41301, f"frame larger than {gw.settings.max_frame_bytes} bytes")
    frame = payload.loads(text, gw.settings.max_json_depth, "frame", exact=exact)
    if not isinstance(frame, dict):
        raise ApiError(
            40001, "invalid (frame): must be an object", {"field": "(frame)", "issue": "not an object"}
        )
    return frame


def method_of(frame: dict[str, Any]) -> str:
    if not isinstance(frame.get("method"), str):
        raise ApiError(40001, "invalid method: required", {"field": "method", "issue": "required"})
    method: str = frame["method"]
    return method


def subscription(gw: Gateway, conn: Connection, method: str, params: Any) -> dict[str, Any]:
    """subscribe / unsubscribe: the user stream, or a symbol's market stream."""
    sub = parse(api.Subscription, params)
    if sub.stream == "user":
        conn.user_stream = method == "subscribe"
        return {"stream": "user", "subscribed": conn.user_stream}
    if sub.symbol is None:
        raise ApiError(
            40001,
            "invalid symbol: required for the market stream",
            {"field": "symbol", "issue": "required"},
        )
    if method == "subscribe":
        return gw.subscribe_market(conn, sub.symbol)
    conn.markets.pop(sub.symbol, None)
    gw.market_subscribers.get(sub.symbol, set()).discard(conn)
    return {"stream": "market", "symbol": sub.symbol, "subscribed": False}


def _read(
    op: Callable[[Gateway, Principal, dict[str, Any]], Awaitable[dict[str, Any]]],
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def call(gw: Gateway, who: Principal, params: dict[str, Any], _request_id: str) -> dict[str, Any]:
        return await op(gw, who, params)

    return call


WS_METHODS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "order.place": OrderEntry.place,
    "order.basket": OrderEntry.place_basket,
    "order.oco": OrderEntry.place_oco,
    "order.bracket": OrderEntry.place_bracket,
    "order.algo": OrderEntry.place_algo,
    "quote.request": OrderEntry.quote,
    "order.index": OrderEntry.place_index,
    "order.index.update": OrderEntry.update_index,
    "order.cancel": OrderEntry.cancel,
    "order.replace": OrderEntry.replace,
    "order.get": _read(Reads.get),
    "orders.open": _read(Reads.open_orders),
    "orders.history": _read(Reads.history),
    "balances.get": _read(Reads.balances),
}
PIPELINED: dict[str, Callable[..., Awaitable[Awaitable[dict[str, Any]]]]] = {
    "order.place": OrderEntry.place_pending,
    "order.basket": OrderEntry.place_basket_pending,
    "order.oco": OrderEntry.place_oco_pending,
    "order.bracket": OrderEntry.place_bracket_pending,
    "order.algo": OrderEntry.place_algo_pending,
    "order.index": OrderEntry.place_index_pending,
}
KNOWN_METHODS = frozenset({"auth.login", "subscribe", "unsubscribe", *WS_METHODS})
