"""A minimal service built on the template, so the template is tested through the real broker.

It accepts every SubmitOrder on order.commands with an OrderAccepted on
order.events, and fails on purpose (a handler bug) for the symbol BUG-BUG.
Run: python -m tests.integration.probe_service worker
"""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from orderstream.common.app import Delivery, Service
from orderstream.common.record import Record
from orderstream.common.records import OrderAccepted, SubmitOrder
from orderstream.common.settings import ServiceSettings


class ProbeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_PROBE_")
    service: ClassVar[str] = "probe"


service = Service(ProbeSettings())
events = service.output("order.events")
app = service.app


@service.consume("order.commands")
async def accept(record: Record, delivery: Delivery) -> None:
    if not isinstance(record, SubmitOrder):
        return
    if record.symbol == "BUG-BUG":
        raise RuntimeError("deliberate handler bug")
    await events.send(record.account_id, OrderAccepted(
        event_id=f"{record.command_id}:accepted", ts_event=record.ts_event,
        account_id=record.account_id, order_id=record.order_id,
        client_order_id=record.client_order_id, symbol=record.symbol, sequence=1,
        side=record.side, order_type=record.order_type, time_in_force=record.time_in_force,
        quantity=record.quantity, price=record.price, venue="PROBE",
    ), headers={"x-request-id": delivery.headers.get("x-request-id", b"")})


if __name__ == "__main__":
    service.main()
