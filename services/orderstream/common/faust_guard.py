"""Keep Faust from losing records it skips during a rebalance.

During a rebalance (and for records fetched in an older consumer generation)
Faust's stream skips a record without handing it to the agent and acknowledges
it anyway (faust/streams.py: ``it.after(event, do_ack or value is
skipped_value, ...)``). An acknowledged offset gets committed, and when the
partition stays with the same worker nothing seeks back, so the record is never
delivered: an order vanishes. The lifecycle kill test caught exactly that on a
worker starved of CPU long enough to be rebalanced.

The guard: a record acknowledged while the flow is stopped, or from an older
generation, is marked done (Faust's rebalance and shutdown waits are not held
up) but remembered as skipped; commits of its partition stop short of it; and
once the flow is back (`resume_skipped`, run on a timer) the consumer seeks back
to it, so it is processed. Records after it come again too, which every
service absorbs (common/state.py and the matcher remember what they applied).
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.types.tuples import ack_lock

log = logging.getLogger(__name__)

_original_ack = Consumer.ack
_original_new_offset = Consumer._new_offset


def skipped(consumer: Any) -> dict[Any, list[int]]:
    """Per partition: [lowest skipped offset, whether the consumer has seeked back to it]."""
    table: dict[Any, list[int]] | None = getattr(consumer, "_orderstream_skipped", None)
    if table is None:
        table = consumer._orderstream_skipped = {}
    return table


def _guarded_ack(self: Any, message: Any) -> bool:
    app = self.app
    stale = not app.flow_control.is_active() or (
        getattr(message, "generation_id", None) is not None
        and message.generation_id != app.consumer_generation_id)
    tp, offset = message.tp, message.offset
    held = skipped(self)
    if stale:
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                if tp not in held or offset < held[tp][0]:
                    held[tp] = [offset, 0]
                return False
    acked = bool(_original_ack(self, message))
    if tp in held and held[tp][1] and offset == held[tp][0]:
        del held[tp]  # processed at last: commits may move past it
    return acked


def _guarded_new_offset(self: Any, tp: Any) -> int | None:
    new: int | None = _original_new_offset(self, tp)
    hold = skipped(self).get(tp)
    if hold is None or new is None or new <= hold[0]:
        return new
    committed = self._committed_offset.get(tp)
    return hold[0] if committed is None or hold[0] > committed else None


async def resume_skipped(app: Any) -> None:
    """Seek back to skipped records once the flow is active again."""
    if not app.flow_control.is_active() or app.rebalancing:
        return
    consumer = app.consumer
    assigned = consumer.assignment()
    for tp, hold in list(skipped(consumer).items()):
        if tp not in assigned:
            del skipped(consumer)[tp]  # moved away: commits stopped short of it, its new owner reads it
        elif not hold[1]:
            log.warning("re-reading records skipped during a rebalance",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": hold[0]})
            hold[1] = 1
            await consumer.seek(tp, hold[0])


def install() -> None:
    """Patch Faust's consumer once per process."""
    if Consumer.ack is not _guarded_ack:
        Consumer.ack = _guarded_ack  # type: ignore[method-assign]
        Consumer._new_offset = _guarded_new_offset  # type: ignore[method-assign]
