"""Retry delays grow, stay jittered and below the cap, and start over after a success."""

from __future__ import annotations

import pytest

from deviceplugin_operator.controller import backoff


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    retry = backoff.Backoff(initial=1.0, cap=5.0, uniform=uniform)
    delays = [retry.next() for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert bounds[0] == (0.5, 1.0)
    assert retry.attempts == 5
    retry.reset()
    assert retry.next() == 1.0


def test_real_jitter_stays_within_half_to_full_delay() -> None:
    retry = backoff.Backoff(initial=0.8, cap=30.0)
    for _ in range(2000):
        delay = retry.next()
        assert 0 < delay <= 30.0
    assert delay >= 15.0


@pytest.mark.parametrize(
    ("initial", "cap", "factor"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1.0, 2.0, 0.5)]
)
def test_nonsense_is_rejected(initial: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        backoff.Backoff(initial, cap, factor)
