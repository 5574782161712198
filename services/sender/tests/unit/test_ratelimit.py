import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagline_sender.domain.ratelimit import RateLimit, SlidingWindow


def run(window: SlidingWindow, arrivals: list[float]) -> list[float]:
    """Start every arrival as soon as the window allows; returns the start times."""
    starts: list[float] = []
    for t in sorted(arrivals):
        now = max(t, starts[-1] if starts else t)
        while (wait := window.try_acquire(now)) > 0:
            now += wait
        starts.append(now)
    return starts


def max_in_any_window(starts: list[float], width: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@given(
    limit=st.integers(1, 50),
    arrivals=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=300),
)
def test_no_sliding_window_ever_exceeds_the_limit(limit: int, arrivals: list[float]) -> None:
    starts = run(SlidingWindow(RateLimit(limit, 1.0)), arrivals)
    assert len(starts) == len(arrivals)
    assert max_in_any_window(starts, 1.0) <= limit


def test_a_burst_is_spread_at_the_limit() -> None:
    starts = run(SlidingWindow(RateLimit(10, 1.0)), [0.0] * 30)
    assert starts[9] == 0.0 and starts[10] == pytest.approx(1.0) and starts[29] == pytest.approx(2.0)


def test_instances_share_by_partitions() -> None:
    limit = RateLimit(200, 1.0)
    shares = [limit.share(owned, 6, 0.9) for owned in (2, 2, 2)]
    assert sum(s.limit for s in shares) <= 200
    assert limit.share(6, 6, 1.0).limit == 200
    assert limit.share(0, 6, 0.9).limit == 1  # never zero: an idle instance can still make progress


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        RateLimit(0, 1.0)
