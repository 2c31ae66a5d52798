#!/usr/bin/env bash
# Signed REST requests with curl and openssl: place a limit order, read it back, list balances.
# ORDERSTREAM_KEY / ORDERSTREAM_SECRET: an API key (after `make up`, alice's is in
# .cache/platform/credentials.json); ORDERSTREAM_URL defaults to the local gateway.
set -euo pipefail
BASE=${ORDERSTREAM_URL:-http://127.0.0.1:8080}
KEY=${ORDERSTREAM_KEY:?set ORDERSTREAM_KEY}
SECRET=${ORDERSTREAM_SECRET:?set ORDERSTREAM_SECRET}

# signed METHOD PATH [BODY]: X-OS-SIGNATURE = hex HMAC-SHA256(secret, timestamp + METHOD + path + body),
# path with its query as sent on the wire, timestamp in milliseconds.
signed() {
  local method=$1 path=$2 body=${3:-} ts sig
  ts=$(( $(date +%s%N) / 1000000 ))
  sig=$(printf '%s%s%s%s' "$ts" "$method" "$path" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
  curl -sS -X "$method" "$BASE$path" -H "X-OS-KEY: $KEY" -H "X-OS-TIMESTAMP: $ts" \
       -H "X-OS-SIGNATURE: $sig" -H 'Content-Type: application/json' --data-binary "$body"
  echo
}

# Decimals are JSON strings; a repeated client_order_id is the same order, never a second one.
cid="sh-$(date +%s%N)"
answer=$(signed POST /api/v1/orders \
  "{\"client_order_id\":\"$cid\",\"symbol\":\"BTC-USD\",\"side\":\"BUY\",\"order_type\":\"LIMIT\",\"time_in_force\":\"GTC\",\"quantity\":\"0.01\",\"price\":\"20000\"}")
echo "placed: $answer"
order_id=$(printf '%s' "$answer" | sed -n 's/.*"order_id": *"\([^"]*\)".*/\1/p')
echo "order: $(signed GET "/api/v1/orders/$order_id")"
echo "balances: $(signed GET /api/v1/balances)"
