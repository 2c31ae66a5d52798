"""Signed REST and a WebSocket session against an Orderstream gateway, with the standard library and aiohttp.

ORDERSTREAM_KEY / ORDERSTREAM_SECRET: an API key (after `make up`, alice's is in
.cache/platform/credentials.json); ORDERSTREAM_URL defaults to the local gateway.
Run: python docs/examples/signed_client.py
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import aiohttp

BASE = os.environ.get("ORDERSTREAM_URL", "http://127.0.0.1:8080")
KEY = os.environ["ORDERSTREAM_KEY"]
SECRET = os.environ["ORDERSTREAM_SECRET"]


def signature(timestamp: str, method: str, path: str, body: bytes) -> str:
    """hex HMAC-SHA256(secret, timestamp + METHOD + path + body); path with its query as sent."""
    message = timestamp.encode() + method.encode() + path.encode() + body
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


def rest(method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = b"" if payload is None else json.dumps(payload).encode()
    stamp = str(int(time.time() * 1000))
    request = urllib.request.Request(BASE + path, data=body or None, method=method, headers={
        "X-OS-KEY": KEY,
        "X-OS-TIMESTAMP": stamp,
        "X-OS-SIGNATURE": signature(stamp, method, path, body),
        "Content-Type": "application/json",
    })
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:  # 4xx/5xx answer {"error": {"code", "message", "details"}}
        return refused.code, json.load(refused)


def order(side: str, price: str) -> dict[str, Any]:
    # Decimals are strings; a repeated client_order_id is answered with the original order.
    return {"client_order_id": f"py-{uuid.uuid4().hex[:12]}", "symbol": "BTC-USD", "side": side,
            "order_type": "LIMIT", "time_in_force": "GTC", "quantity": "0.01", "price": price}


async def websocket() -> None:
    """Log in with a signature of timestamp + GET + /ws, follow the user stream, place an order."""
    async with aiohttp.ClientSession() as http, http.ws_connect(BASE.replace("http", "ws", 1) + "/ws") as ws:
        stamp = str(int(time.time() * 1000))
        login = {"key": KEY, "timestamp": stamp, "signature": signature(stamp, "GET", "/ws", b"")}
        for request in (
            {"id": 1, "method": "auth.login", "params": login},
            {"id": 2, "method": "subscribe", "params": {"stream": "user"}},
            {"id": 3, "method": "order.place", "params": order("BUY", "20000")},
        ):
            await ws.send_json(request)
            while (frame := await ws.receive_json(timeout=10)).get("id") != request["id"]:
                print("pushed:", frame)  # a stream message arriving before the answer
            print(request["method"], "->", frame.get("result", frame.get("error")))


def main() -> None:
    print("POST /api/v1/orders ->", *rest("POST", "/api/v1/orders", order("BUY", "20000")))
    print("GET /api/v1/orders ->", *rest("GET", "/api/v1/orders?limit=10"))
    print("GET /api/v1/balances ->", *rest("GET", "/api/v1/balances"))
    bad = order("BUY", "20000") | {"quantity": "-1"}
    print("a refusal names the field ->", *rest("POST", "/api/v1/orders", bad))
    asyncio.run(websocket())


if __name__ == "__main__":
    main()
