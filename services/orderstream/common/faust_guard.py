"""Keep Faust from committing records it skips during a rebalance.

During a rebalance (and for records fetched in an older consumer generation)
Faust's stream skips a record without handing it to the agent and acknowledges
it anyway (faust/streams.py: ``it.after(event, do_ack or value is
skipped_value, ...)``). An acknowledged offset gets committed, so the record
would never be delivered again: an order vanishes. The lifecycle kill test
caught exactly that on a worker starved of CPU long enough to be rebalanced.

The guard: a record acknowledged while the flow is stopped, or from an older
generation, is marked done (Faust's rebalance and shutdown waits are not held
up) but remembered as skipped, and commits of its partition stop short of it.
Once the rebalance is over, Faust seeks to the committed offsets, so the record
comes again; the template's sequencer (common/gaps.py) makes sure it is handled
before anything after it. The first acknowledgement at or past it, outside a
rebalance, lifts the hold.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.types.tuples import ack_lock

log = logging.getLogger(__name__)

_original_ack = Consumer.ack
_original_new_offset = Consumer._new_offset


def skipped(consumer: Any) -> dict[Any, int]:
    """Per partition: the lowest offset skipped and not handled since."""
    table: dict[Any, int] | None = getattr(consumer, "_orderstream_skipped", None)
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
                if tp not in held or offset < held[tp]:
                    held[tp] = offset
                    log.info("held back the commit of a record skipped in a rebalance",
                             extra={"topic": tp.topic, "partition": tp.partition, "offset": offset})
                return False
    acked = bool(_original_ack(self, message))
    if tp in held and offset >= held[tp]:
        del held[tp]  # handled in order at or past it (common/gaps.py): commits may move on
    return acked


def _guarded_new_offset(self: Any, tp: Any) -> int | None:
    new: int | None = _original_new_offset(self, tp)
    hold = skipped(self).get(tp)
    if hold is None or new is None or new <= hold:
        return new
    committed = self._committed_offset.get(tp)
    return hold if committed is None or hold > committed else None


def install() -> None:
    """Patch Faust's consumer once per process."""
    if Consumer.ack is not _guarded_ack:
        Consumer.ack = _guarded_ack  # type: ignore[method-assign]
        Consumer._new_offset = _guarded_new_offset  # type: ignore[method-assign]
