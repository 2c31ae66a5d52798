"""The collector's write pacing: at most one write per partition per `write_interval_s`."""

from __future__ import annotations

import asyncio
import time

import pytest

from orderstream.collector.app import Collector
from orderstream.collector.settings import CollectorSettings
from orderstream.common.app import Delivery


def source(topic: str, partition: int) -> Delivery:
    return Delivery(topic, partition, 0, None, {})


@pytest.mark.parametrize("interval", [0.0, 0.05])
async def test_a_partition_waits_for_its_own_last_write_only(interval: float) -> None:
    collector = Collector(CollectorSettings(write_interval_s=interval))
    started = time.monotonic()
    await collector.pace(source("execution.reports", 0))  # the first write of a partition: at once
    await collector.pace(source("execution.reports", 1))  # another partition: at once
    await collector.pace(source("collateral.events", 0))  # another topic's partition 0: at once
    assert time.monotonic() - started < 0.03
    await collector.pace(source("execution.reports", 0))  # the same partition again: one interval on
    waited = time.monotonic() - started
    assert interval <= waited < interval + 0.03


async def test_a_write_that_comes_late_does_not_wait() -> None:
    collector = Collector(CollectorSettings(write_interval_s=0.05))
    await collector.pace(source("execution.reports", 0))
    await asyncio.sleep(0.06)  # the interval passed while the partition had nothing to write
    started = time.monotonic()
    await collector.pace(source("execution.reports", 0))
    assert time.monotonic() - started < 0.01
