"""API keys and request signing.

Accounts and keys live in MongoDB (the gateway's own collections). A key's
secret is stored only encrypted (Fernet, with the gateway's secret key): the
server needs the secret itself to check an HMAC, so a hash would not do.
A request is signed with HMAC-SHA256 over `timestamp + METHOD + path + body`;
the timestamp must be within the receive window, and a signature is accepted
once (a replay inside the window is refused). Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet

from orderstream.gateway.errors import ApiError

PERMISSIONS = ("trade", "read", "admin")
MAX_KEY_ID = 128


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a client sends as X-OS-SIGNATURE."""
    msg = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    account_id: str
    permissions: frozenset[str]

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise ApiError(40301, f"this key lacks the {permission} permission", status=403)


class Keys:
    """Accounts and API keys in MongoDB, secrets encrypted."""

    def __init__(self, db: Any, fernet_key: bytes) -> None:
        self.accounts = db["gateway_accounts"]
        self.keys = db["gateway_api_keys"]
        self.fernet = Fernet(fernet_key)
        self._cache: dict[str, tuple[str, frozenset[str], str]] = {}

    async def create_account(self, account_id: str) -> None:
        await self.accounts.update_one(
            {"_id": account_id}, {"$setOnInsert": {"created": time.time()}}, upsert=True
        )

    async def put_key(self, key_id: str, secret: str, account_id: str, permissions: list[str]) -> None:
        await self.create_account(account_id)
        doc = {
            "account_id": account_id,
            "permissions": sorted(permissions),
            "secret_enc": self.fernet.encrypt(secret.encode()).decode(),
        }
        await self.keys.replace_one({"_id": key_id}, {"_id": key_id, **doc}, upsert=True)
        self._cache.pop(key_id, None)

    async def create_key(self, account_id: str, permissions: list[str]) -> tuple[str, str]:
        """A new key for the account: (key id, secret). The secret is shown this once."""
        key_id, secret = "k" + secrets.token_hex(8), secrets.token_urlsafe(32)
        await self.put_key(key_id, secret, account_id, permissions)
        return key_id, secret

    async def lookup(self, key_id: str) -> tuple[str, frozenset[str], str] | None:
        if key_id not in self._cache:
            doc = await self.keys.find_one({"_id": key_id})
            if doc is None:
                return None
            secret = self.fernet.decrypt(doc["secret_enc"].encode()).decode()
            self._cache[key_id] = (doc["account_id"], frozenset(doc["permissions"]), secret)
        return self._cache[key_id]


class Verifier:
    """Checks a signed request: known key, fresh timestamp, right signature, not seen before."""

    def __init__(self, keys: Keys, window_ms: int) -> None:
        self.keys = keys
        self.window_ms = window_ms
        self._seen: dict[str, float] = {}

    async def verify(
        self,
        key_id: Any,
        timestamp: Any,
        signature: Any,
        method: str,
        path: str,
        body: bytes,
    ) -> Principal:
        """The caller of a signed request; 401 with the reason otherwise (credentials come from a client: any
        JSON value on the WebSocket, any header bytes on REST, which aiohttp decodes with surrogates)."""
        if not all(isinstance(v, str) and v for v in (key_id, timestamp, signature)):
            raise ApiError(40100, "missing X-OS-KEY, X-OS-TIMESTAMP or X-OS-SIGNATURE (strings)", status=401)
        if not key_id.isascii() or len(key_id) > MAX_KEY_ID:
            raise ApiError(40101, "unknown API key", status=401)
        found = await self.keys.lookup(key_id)
        if found is None:
            raise ApiError(40101, "unknown API key", status=401)
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
            raise ApiError(40103, "timestamp must be integer milliseconds", status=401)
        ts = int(timestamp)
        if not signature.isascii():
            raise ApiError(40102, "bad signature", status=401)
        now_ms = time.time() * 1000
        if abs(now_ms - ts) > self.window_ms:
            raise ApiError(40103, f"timestamp outside the {self.window_ms} ms receive window", status=401)
        account_id, permissions, secret = found
        if not hmac.compare_digest(sign(secret, timestamp, method, path, body), signature):
            raise ApiError(40102, "bad signature", status=401)
        self._forget_old(now_ms)
        if signature in self._seen:
            raise ApiError(40104, "replayed request", status=401)
        self._seen[signature] = now_ms + self.window_ms
        return Principal(key_id, account_id, permissions)

    def _forget_old(self, now_ms: float) -> None:
        if len(self._seen) > 10_000:
            self._seen = {s: t for s, t in self._seen.items() if t > now_ms}
