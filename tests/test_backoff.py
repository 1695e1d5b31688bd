"""Retry delays: exponential, capped, with full jitter (pure logic, no clock)."""

from __future__ import annotations

import pytest

from amop_trio._backoff import backoff_delay


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.1), (1, 0.2), (3, 0.8), (6, 5.0), (10**6, 5.0)]
)
def test_delays_stay_under_an_exponential_ceiling_and_the_cap(attempt: int, ceiling: float) -> None:
    delays = [backoff_delay(attempt) for _ in range(500)]
    assert all(0 <= d <= ceiling for d in delays)
    # Full jitter: the whole range is used, not a narrow band near the ceiling.
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling


def test_the_nodes_dialers_use_their_own_base_and_cap() -> None:
    assert all(backoff_delay(a, base=0.05, cap=2.0) <= min(2.0, 0.05 * 2**a) for a in range(20))
