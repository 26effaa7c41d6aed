"""The connection pool of reconciler.httpserve: which connections are dropped for new ones,
and how bodies kept in memory are bounded (pure bookkeeping; the server is tested as a
process in tests/integration/test_daemon_http.py and test_mirror_webhook.py)."""

from __future__ import annotations

import asyncio

import pytest

from reconciler import httpserve
from reconciler.httpserve import GRACE_SECONDS, MIN_AGE_SECONDS, Limits, Refused, _Pool


class FakeTransport(asyncio.Transport):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def __repr__(self) -> str:
        return self.name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(httpserve.time, "monotonic", clock.monotonic)
    return clock


def fill(pool: _Pool, count: int, prefix: str = "c") -> list[FakeTransport]:
    transports = [FakeTransport(f"{prefix}{i}") for i in range(count)]
    for transport in transports:
        assert pool.admit(transport)
    return transports


def test_below_the_cap_nothing_is_dropped(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=4))
    old = fill(pool, 3)
    clock.now += 60
    assert pool.admit(FakeTransport("new"))
    assert not any(t.aborted for t in old)


def test_at_the_cap_the_oldest_waiting_connections_past_the_grace_go_first(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=4))
    old = fill(pool, 4)
    pool.answering.add(old[0])  # being answered: never dropped
    clock.now += GRACE_SECONDS

    assert pool.admit(FakeTransport("new"))

    assert [t.aborted for t in old] == [False, True, False, False]
    assert len(pool.open) == 4


def test_young_connections_that_sent_something_stay_then_new_ones_are_refused(
    clock: Clock,
) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=4))
    young = fill(pool, 8)  # all within the grace: kept, up to twice the cap
    pool.heard.update(young)

    refused = not pool.admit(FakeTransport("ninth"))

    assert refused
    assert not any(t.aborted for t in young)


def test_at_twice_the_cap_the_oldest_silent_connection_goes_whatever_its_age(
    clock: Clock,
) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=4))
    young = fill(pool, 8)
    pool.heard.update(young[:3])  # the three oldest sent part of a request

    assert pool.admit(FakeTransport("new"))

    assert [t.aborted for t in young] == [False] * 3 + [True] + [False] * 4


def test_at_twice_the_cap_connections_past_the_short_grace_are_dropped(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=4))
    first = fill(pool, 4, "a")
    clock.now += MIN_AGE_SECONDS
    later = fill(pool, 4, "b")

    assert pool.admit(FakeTransport("new"))

    assert [t.aborted for t in first] == [True, False, False, False]
    assert not any(t.aborted for t in later)


def test_released_connections_free_their_place(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=1, max_connections=2))
    first = fill(pool, 4)
    for transport in first:
        pool.release(transport)
    assert fill(pool, 4, "again")


def test_kept_bodies_stay_within_the_budget_by_dropping_the_oldest_arriving(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=100, body_budget=250))
    a, b, c = fill(pool, 3)
    pool.reserve(a, 100)
    pool.reserve(b, 100)

    pool.reserve(c, 100)

    assert (a.aborted, b.aborted, c.aborted) == (True, False, False)
    assert sum(pool.kept.values()) <= 250


def test_the_budget_always_holds_one_body_of_the_largest_size(clock: Clock) -> None:
    pool = _Pool(Limits(max_body=100, body_budget=50))
    a, b = fill(pool, 2)
    pool.reserve(a, 2 * 100)
    with pytest.raises(Refused) as refused:
        pool.reserve(b, 2 * 100 + 1)  # more than any body may declare, alone
    assert refused.value.status == 503
