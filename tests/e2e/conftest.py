"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Infra
from tests.e2e.up import platform_up


@pytest.fixture(scope="module")
async def platform(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """The whole platform (`orderstream up`) with its own topics, database, ports, run folder and FIX venue,
    once per test module: what it yields is in tests/e2e/up.py."""
    async for p in platform_up(infra, tmp_path_factory):
        yield p
