"""API keys and request signing.

Accounts and keys live in MongoDB (the gateway's own collections). A key's
secret is stored only encrypted (Fernet, with the gateway's secret key): the
server needs the secret itself to check an HMAC, so a hash would not do.
A request is signed with HMAC-SHA256 over `timestamp + METHOD + path + body` (common/signing.py);
the timestamp must be within the receive window, and a signature is accepted
once (a replay inside the window is refused). Secrets are never logged.

Signatures seen are kept in MongoDB (`gateway_signatures`, `_id` = signature), shared by
every gateway process and kept across restarts: the first insert of a signature wins, a
duplicate key is a replay. Each is kept until its own timestamp has left the window (a
request signed ahead of the clock may come back that much later), and one window more
for the clocks of other gateways; nothing else bounds the collection.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet
from pymongo.errors import DuplicateKeyError

from orderstream.common.mongo import insert_new
from orderstream.common.signing import sign
from orderstream.gateway.batching import Coalescer
from orderstream.gateway.errors import ApiError

PERMISSIONS = ("trade", "read", "admin")
MAX_KEY_ID = 128


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
        await _upsert(lambda: self.accounts.update_one(
            {"_id": account_id}, {"$setOnInsert": {"created": time.time()}}, upsert=True
        ))

    async def put_key(self, key_id: str, secret: str, account_id: str, permissions: list[str]) -> None:
        await self.create_account(account_id)
        doc = {
            "account_id": account_id,
            "permissions": sorted(permissions),
            "secret_enc": self.fernet.encrypt(secret.encode()).decode(),
        }
        await _upsert(lambda: self.keys.replace_one({"_id": key_id}, {"_id": key_id, **doc}, upsert=True))
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


class Replays:
    """Signatures seen by any gateway (`gateway_signatures`); those asked together go in one insert."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self._inserts: Coalescer[tuple[str, datetime], bool] = Coalescer(self._insert)

    async def first_use(self, signature: str, keep_until_ms: int) -> bool:
        """Remember the signature until `keep_until_ms`; False when it was already remembered."""
        return await self._inserts.submit((signature, datetime.fromtimestamp(keep_until_ms / 1000, UTC)))

    async def _insert(self, items: list[tuple[str, datetime]]) -> list[bool]:
        seen = await insert_new(self.collection, [{"_id": s, "expires": e} for s, e in items])
        return [i not in seen for i in range(len(items))]

    async def forget(self, before_ms: float) -> None:
        """Drop the signatures to keep until before `before_ms`."""
        await self.collection.delete_many({"expires": {"$lt": datetime.fromtimestamp(before_ms / 1000, UTC)}})


class Verifier:
    """Checks a signed request: known key, fresh timestamp, right signature, not seen before."""

    def __init__(self, keys: Keys, window_ms: int, replays: Replays) -> None:
        self.keys = keys
        self.window_ms = window_ms
        self.replays = replays

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
        found = await self.known(key_id)
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
        if not await self.replays.first_use(signature, ts + self.window_ms):
            raise ApiError(40104, "replayed request", status=401)
        return Principal(key_id, account_id, permissions)

    async def verify_secret(self, key_id: Any, secret: Any) -> Principal:
        """The owner of a key given with its secret itself (a plain login, only safe over TLS); 401
        otherwise."""
        if not all(isinstance(v, str) and v for v in (key_id, secret)):
            raise ApiError(40100, "missing api_key or api_secret (strings)", status=401)
        account_id, permissions, stored = await self.known(key_id)
        if not hmac.compare_digest(_utf8(stored), _utf8(secret)):
            raise ApiError(40102, "wrong API secret", status=401)
        return Principal(key_id, account_id, permissions)

    async def known(self, key_id: str) -> tuple[str, frozenset[str], str]:
        """The account, permissions and secret of a key; 40101 when there is no such key."""
        found = await self.keys.lookup(key_id) if key_id.isascii() and len(key_id) <= MAX_KEY_ID else None
        if found is None:
            raise ApiError(40101, "unknown API key", status=401)
        return found

    async def forget_expired(self) -> None:
        """Drop signatures whose timestamp left the window one window ago (room for clock skew)."""
        await self.replays.forget(time.time() * 1000 - self.window_ms)


def _utf8(text: str) -> bytes:
    return text.encode(errors="surrogatepass")  # a JSON string may hold a lone surrogate


async def _upsert(write: Callable[[], Awaitable[Any]]) -> None:
    """An upsert, once more if another gateway inserted the same `_id` at the same moment (two
    concurrent upserts can both try to insert: the loser gets a duplicate key, and its retry
    finds the document and updates it)."""
    try:
        await write()
    except DuplicateKeyError:
        await write()
