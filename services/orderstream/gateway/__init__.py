"""Gateway: the public API in front of the topics (aiohttp). Signed REST, the JSON-RPC WebSocket,
the OrderGateway document API, a Binance-compatible API and FIX order entry; orders and admin
commands out to the topics, execution reports, balances and market data back to the clients.
app.py wires the rooms (core, orders, reads, streams, admin) and the protocols together."""
