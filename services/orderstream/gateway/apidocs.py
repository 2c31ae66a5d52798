"""The interactive REST API docs: Swagger UI at `/api/v1/docs`, reading the gateway's `/api/v1/openapi.json`.

Swagger UI is npm's `swagger-ui-dist` at the version `web/package-lock.json` pins, copied into
`static/vendor/` by `make web` (which `make install`, `make up` and `make test` run) and by the Docker
image's build stage; the page loads it from this gateway, so it works without a network. Without those
files the page answers 503 saying how to fetch them, rather than a page that stays blank.

"Try it out" is off: every REST request must be signed (HMAC of the secret, docs/api.md), which Swagger
UI cannot do, so a request sent from the page would only ever be answered 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from orderstream.gateway.app import Gateway

VENDOR = Path(__file__).parent / "static" / "vendor"
DOCS_PATH = "/api/v1/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Orderstream REST API</title>
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  supportedSubmitMethods: [],
}});
</script>
</body>
</html>
"""

MISSING = (
    "Swagger UI is not installed in this gateway: run `make web` (npm ci in web/), which copies it into "
    f"{VENDOR}. The OpenAPI document itself is at {OPENAPI_PATH}.\n"
)


def installed() -> bool:
    return all((VENDOR / name).is_file() for name in ASSETS)


async def page(_: web.Request) -> web.Response:
    if not installed():
        return web.Response(status=503, text=MISSING)
    return web.Response(text=PAGE, content_type="text/html")


def asset(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(_: web.Request) -> web.StreamResponse:
        if not (VENDOR / name).is_file():
            return web.Response(status=503, text=MISSING)
        return web.FileResponse(VENDOR / name, headers={"Content-Type": content_type})

    return serve


def register(app: web.Application, gw: Gateway) -> None:
    """`/api/v1/docs` and the two Swagger UI files it loads; `gw` is unused (the registrations' shape)."""
    app.router.add_get(DOCS_PATH, page)
    for name, content_type in ASSETS.items():
        app.router.add_get(f"{DOCS_PATH}/{name}", asset(name, content_type))
