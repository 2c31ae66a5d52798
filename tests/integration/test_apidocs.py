"""The docs against a real gateway process: Swagger UI at /api/v1/docs reading the OpenAPI document, and
docs/examples/ (the API guide's runnable examples) placing orders with their own signing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orderstream.gateway import apidocs
from tests.conftest import Infra
from tests.integration.gateway_process import running_gateway

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


@pytest.fixture(scope="module")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(infra, tmp_path_factory.mktemp("gateway"), accounts=("A",)) as gw:
        yield gw


async def test_api_docs_page_serves_swagger_ui_on_the_openapi_document(gateway: dict[str, Any]) -> None:
    assert apidocs.installed(), "Swagger UI is missing: make web (make install and make test fetch it)"
    gw = gateway
    async with aiohttp.ClientSession() as http:
        async with http.get(gw["base"] + "/api/v1/docs") as resp:  # unsigned: the docs are public
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert 'url: "/api/v1/openapi.json"' in page
        loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sorted(loaded) == ["/api/v1/docs/swagger-ui-bundle.js", "/api/v1/docs/swagger-ui.css"]
        for path in loaded:  # every file the page loads comes from this gateway, as npm shipped it
            async with http.get(gw["base"] + path) as resp:
                assert resp.status == 200, path
                body = await resp.read()
            assert body == (apidocs.VENDOR / path.rsplit("/", 1)[1]).read_bytes()
            assert resp.content_type == ("text/css" if path.endswith(".css") else "text/javascript")
        assert b"SwaggerUIBundle" in (apidocs.VENDOR / "swagger-ui-bundle.js").read_bytes()
        async with http.get(gw["base"] + "/api/v1/openapi.json") as resp:  # what the page reads
            assert resp.status == 200
            assert "/api/v1/orders" in (await resp.json())["paths"]


def run_example(gateway: dict[str, Any], *command: str) -> str:
    key = gateway["A"]
    env = {**os.environ, "ORDERSTREAM_URL": gateway["base"], "ORDERSTREAM_KEY": key.key,
           "ORDERSTREAM_SECRET": key.secret}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_shell_example_signs_with_openssl_and_places_an_order(gateway: dict[str, Any]) -> None:
    out = run_example(gateway, "bash", str(EXAMPLES / "signed_rest.sh"))
    placed, read, balances = out.splitlines()
    assert placed.startswith("placed: ") and '"order_id"' in placed and '"duplicate": false' in placed, out
    assert read.startswith("order: ") and '"client_order_id": "sh-' in read, out  # its own order, read back
    assert balances.startswith("balances: {") and '"balances"' in balances, out


async def test_the_python_example_signs_rest_and_the_websocket_login(gateway: dict[str, Any]) -> None:
    out = run_example(gateway, sys.executable, str(EXAMPLES / "signed_client.py"))
    lines = out.splitlines()
    assert lines[0].startswith("POST /api/v1/orders -> 200 {'order_id'"), out
    assert lines[1].startswith("GET /api/v1/orders -> 200 {'orders': "), out  # read model: no collector here
    assert lines[2].startswith("GET /api/v1/balances -> 200"), out
    assert lines[3].startswith("a refusal names the field -> 400") and "'field': 'quantity'" in lines[3], out
    assert any(line.startswith("auth.login -> {") and "'account_id': 'A'" in line for line in lines), out
    assert any(line.startswith("order.place -> {'order_id'") for line in lines), out
