"""How a request to the gateway is signed: one definition for the gateway that checks a signature
(gateway/auth.py) and the client library that makes it (orderstream.client).

The signature is the hex HMAC-SHA256, keyed with the API secret, of
`timestamp + METHOD + path + body`: the timestamp in milliseconds as sent in X-OS-TIMESTAMP, the
method in capitals, the path with its query exactly as sent (percent-encoded), the body's bytes
(empty for GET and DELETE). A WebSocket logs in by signing `GET /ws` with an empty body.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a client sends as X-OS-SIGNATURE."""
    msg = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
