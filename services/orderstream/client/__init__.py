"""The Orderstream client library: the gateway's public API from Python.

- `Client(base, key, secret)`: signed REST calls with typed answers (`place_order`, `cancel_order`,
  `replace_order`, `get_order`, `open_orders`, `history`, `balances`, `create_account`, `deposit`;
  `request(method, path, body)` for any other operation) on its own aiohttp session.
- `Client.stream()`: the WebSocket, logged in, that reconnects after a drop and subscribes again
  (`Stream`: `subscribe_user`, `subscribe_market`, `call`, `next_event`).
- `ApiCallError`: every refusal, with the API's error `code` and `details` (the field at fault...).
- `sign`: the request signature (HMAC-SHA256 of `timestamp + METHOD + path + body`), for clients in
  other languages to compare against; `GatewayClient` and `Session` are the lower layer (one key,
  the caller's aiohttp session; one WebSocket).

Place an order and wait for its first execution report (the gateway's URL and an API key in the
environment; docs/client.md has more examples, and the test suite runs them all):

```python
import asyncio
import os
import uuid
from decimal import Decimal

from orderstream.client import Client


async def main() -> None:
    env = os.environ
    async with Client(env["ORDERSTREAM_URL"], env["ORDERSTREAM_KEY"], env["ORDERSTREAM_SECRET"]) as client:
        async with client.stream() as stream:
            await stream.subscribe_user()
            placed = await client.place_order(
                client_order_id=f"example-{uuid.uuid4().hex[:8]}", symbol="BTC-USD", side="BUY",
                quantity=Decimal("0.01"), price=Decimal("20000"),
            )
            while True:
                event = await stream.next_event(timeout=30)
                report = event.get("data", {})
                if event.get("type") == "execution_report" and report["order_id"] == placed.order_id:
                    print(placed.order_id, report["status"])
                    break
            await client.cancel_order(placed.order_id)


asyncio.run(main())
```
"""

from orderstream.client.errors import ApiCallError
from orderstream.client.models import ApiKey, Balance, CommandSent, Order, OrderPlaced, OrdersPage, Requested
from orderstream.client.rest import Client, GatewayClient
from orderstream.client.ws import Session, Stream
from orderstream.common.signing import sign

__all__ = [
    "ApiCallError",
    "ApiKey",
    "Balance",
    "Client",
    "CommandSent",
    "GatewayClient",
    "Order",
    "OrderPlaced",
    "OrdersPage",
    "Requested",
    "Session",
    "Stream",
    "sign",
]
