"""The gateway's in-flight bound under a slow order path (gateway/inflight.py): it shrinks so the
orders let in wait about the target, and grows back when the path is quick again."""

from __future__ import annotations

from orderstream.gateway.inflight import InFlight


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admit(f: InFlight, account: str, n: int, start: int) -> list[str]:
    """Send up to n orders as far as the bound lets them; the ids let in."""
    ids = []
    for i in range(start, start + n):
        if f.busy():
            break
        ids.append(f"o{i}")
        f.sent(account, [f"o{i}"])
    return ids


def answer(f: InFlight, clock: Clock, sent: list[str], after_s: float) -> None:
    """The first reports of `sent` come `after_s` later; then the next judgement."""
    clock.now += after_s
    for order_id in sent:
        f.reported("A", order_id)
    clock.now += 0.1
    f.busy()


def test_a_fixed_bound_without_a_target() -> None:
    clock = Clock()
    f = InFlight(3, 30.0, clock=clock)
    assert admit(f, "A", 5, 0) == ["o0", "o1", "o2"]
    assert f.refused == 1
    clock.now += 10
    f.reported("A", "o0")
    assert (f.busy(), f.bound) == (False, 3)


def test_the_bound_follows_the_latency_of_orders_sent_since_the_last_cut() -> None:
    clock = Clock()
    f = InFlight(256, 30.0, wait_target_s=0.5, floor=16, clock=clock)
    assert len(admit(f, "A", 200, 0)) == 200  # a quiet gateway takes a burst
    clock.now += 2.0  # the chain answers them after 2 s: four times the target
    for i in range(100):
        f.reported("A", f"o{i}")
    clock.now += 0.1
    assert f.busy() is True  # 100 out, and the bound cut to 256 x 0.5 / 2
    assert f.bound == 64
    clock.now += 0.1
    f.busy()
    assert f.bound == 64  # orders out, none sent since the cut answered: it holds
    # the other 100, sent before the cut, come as slowly: they do not cut again
    clock.now += 0.4
    for i in range(100, 200):
        f.reported("A", f"o{i}")
    clock.now += 0.1
    assert f.busy() is False
    assert f.bound == 70  # grew a tenth: nothing sent after the cut was slow
    # orders sent after the cut answer at 1 s: twice the target, cut again
    sent = admit(f, "A", 100, 200)
    assert len(sent) == 70
    answer(f, clock, sent, 1.0)
    assert f.bound == 35
    # a stalled path never cuts below the floor
    for i in range(5):
        answer(f, clock, admit(f, "A", 100, 1000 + i * 100), 30.0)
    assert f.bound == 16
    # quick again: back to the limit, a tenth a judgement (about 4 s from the floor)
    for _ in range(40):
        answer(f, clock, [], 0.0)
    assert 200 < f.bound < 256
    for _ in range(5):
        answer(f, clock, [], 0.0)
    assert f.bound == 256


def test_unreported_orders_expire_and_a_refused_send_does_not_count() -> None:
    clock = Clock()
    f = InFlight(2, 4.0, wait_target_s=0.5, clock=clock)
    admit(f, "A", 2, 0)
    f.reported("A", "o1", report=False)  # not sent after all: no latency
    assert f.count == 1 and f.bound == 2
    clock.now += 5
    assert f.busy() is False
    assert (f.count, f.expired) == (0, 1)
