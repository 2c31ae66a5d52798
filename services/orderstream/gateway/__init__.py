"""Public WebSocket and REST API (aiohttp): auth, validation, commands out, streams in (issue 4)."""
