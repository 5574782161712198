import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagline_contracts.segments import RFM_SEGMENTS
from tagline_tagger.domain.rfm import (
    DEFAULT_THRESHOLDS,
    MIN_QUINTILE_POPULATION,
    SEGMENT_RULES,
    AbsoluteThresholds,
    RfmModel,
    RfmScore,
    RfmValues,
    days_since,
    fit,
    score_all,
    segment_of,
)

NOW = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
SCORES = range(1, 6)

quintiles = partial(fit, min_population=1)
"""``fit`` with quintiles for any population: the quintile arithmetic on populations small enough to check
by hand (the service's minimum is ``MIN_QUINTILE_POPULATION``)."""


def values(days: float, orders: int, monetary: float) -> RfmValues:
    return RfmValues(NOW - timedelta(days=days), orders, monetary)


def triple(score: RfmScore) -> tuple[int, int, int]:
    return score.recency, score.frequency, score.monetary


# ----------------------------------------------------------------------------------------------------
# Cut points


def test_cut_points_of_1_to_100_fall_halfway_between_the_quintiles() -> None:
    hundred = [float(x) for x in range(1, 101)]
    model = fit(hundred, list(range(1, 101)), hundred, now=NOW)

    assert model.frequency == (20.5, 40.5, 60.5, 80.5)
    assert model.monetary == (20.5, 40.5, 60.5, 80.5)
    assert model.recency_days == (20.5, 40.5, 60.5, 80.5)
    assert model.population == 100
    assert model.computed_at == NOW


def test_each_quintile_of_1_to_100_holds_twenty_members() -> None:
    hundred = [float(x) for x in range(1, 101)]
    model = fit(hundred, list(range(1, 101)), hundred, now=NOW)
    scores = score_all(model, hundred, list(range(1, 101)), hundred)

    for dimension in ("recency", "frequency", "monetary"):
        assert Counter(getattr(score, dimension) for score in scores) == dict.fromkeys(SCORES, 20)
    assert triple(scores[0]) == (5, 1, 1)  # 1 day ago, 1 order, 1 spent
    assert triple(scores[19]) == (5, 1, 1)
    assert triple(scores[20]) == (4, 2, 2)
    assert triple(scores[99]) == (1, 5, 5)


def test_cut_points_do_not_depend_on_input_order() -> None:
    rng = random.Random(7)
    days = [rng.uniform(0, 400) for _ in range(1000)]
    orders = [rng.randint(1, 30) for _ in range(1000)]
    money = [rng.uniform(1, 5000) for _ in range(1000)]
    shuffled = list(range(1000))
    rng.shuffle(shuffled)

    model = fit(days, orders, money, now=NOW)
    again = fit(
        [days[i] for i in shuffled], [orders[i] for i in shuffled], [money[i] for i in shuffled], now=NOW
    )

    assert again == model


# ----------------------------------------------------------------------------------------------------
# Ties, direction, small populations


def test_equal_values_get_equal_scores_and_a_tie_on_a_boundary_takes_the_lower_quintile() -> None:
    # 70 one-time buyers, 15 with 2 orders, 15 with 3: the 20/40/60 % boundaries all fall among the ones.
    orders = [1] * 70 + [2] * 15 + [3] * 15
    days = [float(i) for i in range(100)]
    money = [100.0] * 100
    model = fit(days, orders, money, now=NOW)
    scores = score_all(model, days, orders, money)

    assert model.frequency == (1.0, 1.0, 1.0, 2.0)
    frequency_by_orders = {
        n: {s.frequency for o, s in zip(orders, scores, strict=True) if o == n} for n in (1, 2, 3)
    }
    assert frequency_by_orders == {1: {1}, 2: {4}, 3: {5}}
    # Everybody spent the same: all on every cut point, so all on the worse side.
    assert model.monetary == (100.0, 100.0, 100.0, 100.0)
    assert {s.monetary for s in scores} == {1}


def test_recent_buyers_get_the_high_recency_scores() -> None:
    days = [1.0, 10.0, 30.0, 90.0, 365.0]
    model = quintiles(days, [1] * 5, [10.0] * 5, now=NOW)

    recency = [model.score(values(d, 1, 10.0)).recency for d in days]
    assert recency == [5, 4, 3, 2, 1]
    assert model.score(values(0, 1, 10.0)).recency == 5
    assert model.score(values(1000, 1, 10.0)).recency == 1


def test_recency_is_measured_at_computed_at_unless_now_is_given() -> None:
    model = quintiles([1.0, 10.0, 30.0, 90.0, 365.0], [1] * 5, [10.0] * 5, now=NOW)
    member = values(1, 1, 10.0)

    assert model.score(member).recency == 5
    assert model.score(member, now=NOW + timedelta(days=100)).recency == 2
    assert model.score(member, now=NOW + timedelta(days=1000)).recency == 1


def test_more_orders_and_more_money_score_higher() -> None:
    model = quintiles([5.0] * 5, [1, 2, 3, 4, 5], [10.0, 20.0, 30.0, 40.0, 50.0], now=NOW)

    assert [model.score(values(5, n, 10.0 * n)).frequency for n in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [model.score(values(5, n, 10.0 * n)).monetary for n in range(1, 6)] == [1, 2, 3, 4, 5]
    assert triple(model.score(values(5, 0, 0.0)))[1:] == (1, 1)
    assert triple(model.score(values(5, 99, 1e9)))[1:] == (5, 5)


def test_a_single_member_is_in_the_middle() -> None:
    model = quintiles([12.0], [2], [300.0], now=NOW)

    assert model.population == 1
    assert triple(model.score(values(12, 2, 300.0))) == (3, 3, 3)
    assert triple(model.score(values(1, 9, 900.0))) == (5, 5, 5)
    assert triple(model.score(values(50, 1, 10.0))) == (1, 1, 1)


def test_two_members_score_two_and_four() -> None:
    model = quintiles([30.0, 3.0], [1, 4], [50.0, 800.0], now=NOW)

    assert [triple(s) for s in score_all(model, [30.0, 3.0], [1, 4], [50.0, 800.0])] == [(2, 2, 2), (4, 4, 4)]


def test_three_members_score_one_three_five() -> None:
    model = quintiles([30.0, 10.0, 3.0], [1, 2, 4], [50.0, 90.0, 800.0], now=NOW)

    scores = score_all(model, [30.0, 10.0, 3.0], [1, 2, 4], [50.0, 90.0, 800.0])
    assert [triple(s) for s in scores] == [(1, 1, 1), (3, 3, 3), (5, 5, 5)]


def test_an_empty_population_gets_the_absolute_thresholds() -> None:
    model = fit([], [], [], now=NOW)

    assert (model.population, model.scoring) == (0, "absolute")
    assert model.recency_days == (30.0, 90.0, 180.0, 365.0)
    assert triple(model.score(values(0, 1, 1.0))) == (5, 1, 1)
    assert triple(model.score(values(999, 100, 1e6))) == (1, 5, 5)
    assert score_all(model, [], [], []) == []


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        fit([1.0, 2.0], [1], [1.0, 2.0], now=NOW)
    model = fit([1.0], [1], [1.0], now=NOW)
    with pytest.raises(ValueError, match="differ in length"):
        score_all(model, [1.0], [1], [])
    with pytest.raises(ValueError, match="differ in length"):
        quintiles([1.0, 2.0], [1], [1.0, 2.0], now=NOW)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        fit([1.0, bad], [1, 2], [1.0, 2.0], now=NOW)
    with pytest.raises(ValueError, match="finite"):
        fit([1.0, 2.0], [1, 2], [bad, 2.0], now=NOW)
    with pytest.raises(ValueError, match="finite"):
        quintiles([1.0, bad], [1, 2], [1.0, 2.0], now=NOW)


def test_days_since_counts_whole_days_and_never_below_zero() -> None:
    assert days_since(NOW - timedelta(days=2, hours=23, minutes=59), NOW) == 2
    assert days_since(NOW - timedelta(days=3), NOW) == 3
    assert days_since(NOW - timedelta(minutes=2), NOW) == 0
    assert days_since(NOW + timedelta(days=1), NOW) == 0


# ----------------------------------------------------------------------------------------------------
# Minimum population: quintiles from MIN_QUINTILE_POPULATION buyers on, absolute thresholds below


def test_four_buyers_who_ordered_minutes_apart_are_all_new_customers_not_at_risk() -> None:
    """The acceptance case: 4 buyers of one live session, one of them 2 minutes before the others."""
    last_orders = [NOW - timedelta(minutes=m) for m in (2, 0, 0, 1)]
    amounts = (590.0, 590.0, 880.0, 290.0)
    buyers = [RfmValues(at, 1, amount) for at, amount in zip(last_orders, amounts, strict=True)]
    days = [days_since(b.last_order_at, NOW) for b in buyers]
    model = fit(days, [b.orders for b in buyers], [b.monetary for b in buyers], now=NOW)

    assert (model.scoring, model.population, model.min_population) == ("absolute", 4, MIN_QUINTILE_POPULATION)
    scores = score_all(model, days, [b.orders for b in buyers], [b.monetary for b in buyers])
    assert [s.segment for s in scores] == ["New Customers"] * 4
    assert [triple(s) for s in scores] == [(5, 1, 1)] * 4
    assert scores == [model.score(b) for b in buyers]


@pytest.mark.parametrize(
    ("buyers", "scoring"),
    [(MIN_QUINTILE_POPULATION - 1, "absolute"), (MIN_QUINTILE_POPULATION, "quintiles"), (250, "quintiles")],
)
def test_quintiles_from_the_minimum_population_on(buyers: int, scoring: str) -> None:
    days = [float(i % 400) for i in range(buyers)]
    orders = [1 + i % 7 for i in range(buyers)]
    money = [100.0 * (1 + i) for i in range(buyers)]

    model = fit(days, orders, money, now=NOW)

    assert model.scoring == scoring
    assert model.population == buyers
    scores = score_all(model, days, orders, money)
    if scoring == "quintiles":
        # each monetary score holds a fifth of the buyers (all values differ)
        assert Counter(s.monetary for s in scores) == dict.fromkeys(SCORES, buyers // 5)
    else:
        assert model.monetary == DEFAULT_THRESHOLDS.monetary


def test_the_minimum_population_is_a_parameter() -> None:
    assert fit([1.0] * 10, [1] * 10, [1.0] * 10, now=NOW, min_population=10).scoring == "quintiles"
    assert fit([1.0] * 10, [1] * 10, [1.0] * 10, now=NOW, min_population=11).scoring == "absolute"
    with pytest.raises(ValueError, match="at least 1"):
        fit([1.0], [1], [1.0], now=NOW, min_population=0)


@pytest.mark.parametrize(
    ("days", "orders", "money", "expected"),
    [
        (0, 1, 0.0, (5, 1, 1)),
        (30, 1, 1_000.0, (5, 1, 1)),  # on a threshold: the smaller values' side
        (31, 2, 1_000.01, (4, 2, 2)),
        (90, 2, 3_000.0, (4, 2, 2)),
        (91, 3, 3_001.0, (3, 3, 3)),
        (180, 3, 10_000.0, (3, 3, 3)),
        (181, 4, 10_001.0, (2, 4, 4)),
        (365, 5, 30_000.0, (2, 4, 4)),
        (366, 6, 30_001.0, (1, 5, 5)),
        (2_000, 40, 1e7, (1, 5, 5)),
    ],
)
def test_absolute_thresholds(days: int, orders: int, money: float, expected: tuple[int, int, int]) -> None:
    model = fit([], [], [], now=NOW)
    assert triple(model.score(values(days, orders, money))) == expected
    assert triple(score_all(model, [float(days)], [orders], [money])[0]) == expected


def test_absolute_thresholds_can_be_set_and_are_checked() -> None:
    cheap = AbsoluteThresholds(monetary=(200, 500, 1_000, 3_000))
    model = fit([3.0], [1], [600.0], now=NOW, thresholds=cheap)
    assert model.monetary == (200.0, 500.0, 1_000.0, 3_000.0)
    assert model.score(values(3, 1, 600.0)).monetary == 3
    with pytest.raises(ValueError, match="ascending"):
        AbsoluteThresholds(recency_days=(30, 20, 180, 365))
    with pytest.raises(ValueError, match="4 cut points"):
        AbsoluteThresholds(frequency=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        AbsoluteThresholds(monetary=(-1, 0, 1, 2))


def test_buyers_of_the_same_day_are_equally_recent_in_a_large_population() -> None:
    """Minutes apart is no difference: 300 buyers of one live session, over two hours, all get R 5."""
    last_orders = [NOW - timedelta(seconds=24 * i) for i in range(300)]
    days = [days_since(at, NOW) for at in last_orders]
    model = fit(days, [1] * 300, [590.0] * 300, now=NOW)

    assert model.scoring == "quintiles"
    assert {s.recency for s in score_all(model, days, [1] * 300, [590.0] * 300)} == {5}
    assert {model.score(RfmValues(at, 1, 590.0)).recency for at in last_orders} == {5}


def test_a_tie_on_a_recency_boundary_takes_the_more_recent_side() -> None:
    # 60 bought today, 40 a week ago, 100 a year ago: the 20 % boundary falls among today's buyers, who all
    # get R 5 (on the old rule, a value on a cut point counting as past it, they all had R 4 and nobody R 5)
    days = [0.0] * 60 + [7.0] * 40 + [365.0] * 100
    model = fit(days, [1] * 200, [100.0] * 200, now=NOW)

    scores = score_all(model, days, [1] * 200, [100.0] * 200)
    recency = {d: {s.recency for s, x in zip(scores, days, strict=True) if x == d} for d in (0.0, 7.0, 365.0)}
    assert recency == {0.0: {5}, 7.0: {4}, 365.0: {3}}


# ----------------------------------------------------------------------------------------------------
# score and score_all agree


def test_score_all_agrees_with_score() -> None:
    rng = random.Random(11)
    members = [
        RfmValues(
            NOW - timedelta(seconds=rng.choice([60, 3 * 86_400, 3 * 86_400, rng.randint(0, 400 * 86_400)])),
            rng.choice([1, 1, 1, 2, 3, rng.randint(1, 50)]),
            float(round(rng.expovariate(1 / 800))),
        )
        for _ in range(2000)
    ]
    days = [days_since(member.last_order_at, NOW) for member in members]
    orders = [member.orders for member in members]
    money = [member.monetary for member in members]
    model = fit(days, orders, money, now=NOW)

    fast = score_all(model, days, orders, money)

    assert fast == [model.score(member) for member in members]
    assert len({id(score) for score in fast}) <= 125  # shared, not one object per member


# ----------------------------------------------------------------------------------------------------
# Properties

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
population = st.lists(
    st.tuples(finite, st.integers(min_value=0, max_value=10_000), finite), min_size=0, max_size=60
)


def fitted(members: list[tuple[float, int, float]], min_population: int = 1) -> RfmModel:
    return fit(
        [d for d, _, _ in members],
        [o for _, o, _ in members],
        [m for _, _, m in members],
        now=NOW,
        min_population=min_population,
    )


@given(
    population,
    st.lists(st.tuples(finite, st.integers(min_value=-5, max_value=10**9), finite), max_size=20),
    st.sampled_from([1, 30, MIN_QUINTILE_POPULATION]),
)
def test_scores_are_always_one_to_five_with_a_matching_segment(
    members: list[tuple[float, int, float]], others: list[tuple[float, int, float]], minimum: int
) -> None:
    model = fitted(members, minimum)
    everyone = members + others
    scores = score_all(
        model, [d for d, _, _ in everyone], [o for _, o, _ in everyone], [m for _, _, m in everyone]
    )

    assert len(scores) == len(everyone)
    for score in scores:
        assert {score.recency, score.frequency, score.monetary} <= set(SCORES)
        assert score.segment == segment_of(score.recency, score.frequency, score.monetary)
    assert len(model.recency_days) == len(model.frequency) == len(model.monetary) == 4
    assert model.scoring == ("quintiles" if len(members) >= minimum else "absolute")


@given(
    population,
    finite,
    finite,
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([1, MIN_QUINTILE_POPULATION]),
)
def test_scores_are_monotone(
    members: list[tuple[float, int, float]], a: float, b: float, orders_a: int, orders_b: int, minimum: int
) -> None:
    model = fitted(members, minimum)
    low, high = sorted((a, b))
    few, many = sorted((orders_a, orders_b))

    assert model.score(values(0, 1, low)).monetary <= model.score(values(0, 1, high)).monetary
    assert model.score(values(0, few, 0.0)).frequency <= model.score(values(0, many, 0.0)).frequency
    # More days since the last order never scores better on recency (days measured directly).
    older, newer = score_all(model, [high, low], [1, 1], [0.0, 0.0])
    assert older.recency <= newer.recency


@given(population.filter(bool))
def test_equal_values_always_score_equal_and_quintiles_hold_the_population(
    members: list[tuple[float, int, float]],
) -> None:
    model = fitted(members)
    days = [d for d, _, _ in members]
    orders = [o for _, o, _ in members]
    money = [m for _, _, m in members]
    scores = score_all(model, days, orders, money)

    by_money: dict[float, set[int]] = {}
    for m, score in zip(money, scores, strict=True):
        by_money.setdefault(m, set()).add(score.monetary)
    assert all(len(found) == 1 for found in by_money.values())
    # With distinct values no quintile holds more than its share, rounded up.
    if len(set(money)) == len(money) and len(money) >= 5:
        counts = Counter(s.monetary for s in scores)
        assert max(counts.values()) <= -(-len(money) // 5)


# ----------------------------------------------------------------------------------------------------
# Segments


def test_every_score_triple_maps_to_one_of_the_ten_segments_and_every_segment_is_reached() -> None:
    found = {(r, f, m): segment_of(r, f, m) for r in SCORES for f in SCORES for m in SCORES}

    assert len(found) == 125
    assert set(found.values()) == set(RFM_SEGMENTS)
    assert {rule.segment for rule in SEGMENT_RULES} == set(RFM_SEGMENTS)
    assert len(SEGMENT_RULES) == len(RFM_SEGMENTS)


def test_each_r_fm_pair_is_covered_by_a_first_rule() -> None:
    for r in SCORES:
        for fm in SCORES:
            assert any(rule.covers(r, fm) for rule in SEGMENT_RULES), (r, fm)


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, "Champions"),
        (4, 4, 3, "Champions"),  # FM 3.5 rounds up to 4
        (2, 5, 5, "Loyal Customers"),
        (5, 3, 3, "Loyal Customers"),
        (5, 1, 1, "New Customers"),
        (4, 1, 1, "New Customers"),
        (5, 1, 2, "Potential Loyalist"),  # FM 1.5 rounds up to 2: not one small order
        (3, 1, 1, "Promising"),
        (3, 2, 2, "Potential Loyalist"),
        (2, 2, 2, "Need Attention"),
        (2, 1, 1, "About To Sleep"),
        (1, 5, 4, "Can't Lose Them"),
        (1, 3, 2, "At Risk"),
        (1, 1, 2, "At Risk"),
        (1, 1, 1, "Lost"),
    ],
)
def test_segment_examples(r: int, f: int, m: int, segment: str) -> None:
    assert segment_of(r, f, m) == segment


@pytest.mark.parametrize("bad", [(0, 3, 3), (3, 6, 3), (3, 3, -1)])
def test_segment_of_refuses_scores_outside_one_to_five(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        segment_of(*bad)


# ----------------------------------------------------------------------------------------------------
# Storage


@pytest.mark.parametrize("buyers", [50, 150])
def test_to_doc_and_from_doc_roundtrip(buyers: int) -> None:
    rng = random.Random(3)
    model = fit(
        [rng.uniform(0, 200) for _ in range(buyers)],
        [rng.randint(1, 9) for _ in range(buyers)],
        [rng.uniform(0, 999) for _ in range(buyers)],
        now=NOW,
    )
    doc = model.to_doc()

    assert doc["scoring"] == ("absolute" if buyers < MIN_QUINTILE_POPULATION else "quintiles")
    assert doc["min_population"] == MIN_QUINTILE_POPULATION
    assert doc["computed_at"] == NOW
    assert isinstance(doc["recency_days"], list)
    assert all(
        isinstance(cut, float) for key in ("recency_days", "frequency", "monetary") for cut in doc[key]
    )
    assert doc["model_id"] == "rfm-20261123T100000.123Z"
    assert RfmModel.from_doc(doc) == model
    json.dumps(
        {**doc, "computed_at": doc["computed_at"].isoformat()}
    )  # JSON-friendly apart from the datetime
    assert RfmModel.from_doc(fit([], [], [], now=NOW).to_doc()) == fit([], [], [], now=NOW)


def test_model_id_survives_the_millisecond_truncation_of_bson_and_other_time_zones() -> None:
    model = fit([1.0], [1], [1.0], now=NOW)
    stored = {**model.to_doc(), "computed_at": NOW.replace(microsecond=123000)}
    taipei = timezone(timedelta(hours=8))

    assert RfmModel.from_doc(stored).model_id == model.model_id
    assert fit([1.0], [1], [1.0], now=NOW.astimezone(taipei)).model_id == model.model_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"computed_at": datetime(2026, 1, 1)}, "aware"),
        ({"population": -1}, "negative"),
        ({"frequency": [1.0, 2.0, 3.0]}, "4 cut points"),
        ({"monetary": [4.0, 3.0, 2.0, 1.0]}, "ascending"),
        ({"recency_days": [1.0, 2.0, 3.0, float("inf")]}, "finite"),
        ({"population": 0}, "must be 'absolute'"),
        ({"min_population": 4}, "must be 'absolute'"),
        ({"scoring": "absolute"}, "must be 'quintiles'"),
        ({"min_population": 0}, "at least 1"),
    ],
)
def test_from_doc_refuses_inconsistent_models(change: dict[str, object], message: str) -> None:
    doc = {**quintiles([1.0, 2.0, 3.0], [1, 2, 3], [1.0, 2.0, 3.0], now=NOW).to_doc(), **change}
    with pytest.raises(ValueError, match=message):
        RfmModel.from_doc(doc)


def test_models_stored_before_scoring_existed_are_read() -> None:
    """Quintiles fitted without a minimum, and the cut-point-less model of a channel without buyers."""
    old = quintiles([1.0, 2.0, 3.0], [1, 2, 3], [1.0, 2.0, 3.0], now=NOW).to_doc()
    del old["scoring"], old["min_population"]
    assert RfmModel.from_doc(old) == quintiles([1.0, 2.0, 3.0], [1, 2, 3], [1.0, 2.0, 3.0], now=NOW)
    empty = {"computed_at": NOW, "population": 0, "recency_days": [], "frequency": [], "monetary": []}
    model = RfmModel.from_doc(empty)
    assert (model.scoring, model.population, model.frequency) == ("absolute", 0, DEFAULT_THRESHOLDS.frequency)
