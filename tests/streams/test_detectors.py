"""One check suite over every detector: a known shift is caught, a stationary stream stays quiet, and
state survives a snapshot/restore round trip."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from driftloop.infra.spec import BINARY_DETECTORS, DETECTOR_NAMES, DetectorConfig
from driftloop.streams.drift.categorical import CategoricalShift
from driftloop.streams.drift.detectors import build

# Each detector's stream before and after its change, and settings strict enough to be quiet on the first.
Stream = Callable[[random.Random, bool], object]
NUMERIC: Stream = lambda rng, after: rng.gauss(1.5 if after else 0.0, 1.0)  # noqa: E731
MISTAKES: Stream = lambda rng, after: float(rng.random() < (0.45 if after else 0.1))  # noqa: E731
CLASSES: Stream = lambda rng, after: rng.choice("abbc" if after else "aab")  # noqa: E731

CASES: dict[str, tuple[Stream, dict]] = {
    "CUSUM": (NUMERIC, {"run_length": 1e7, "reference": 2000}),
    "ADWIN": (NUMERIC, {"delta": 1e-5}),
    "PageHinkley": (NUMERIC, {"threshold": 200.0, "delta": 0.05}),
    "KSWIN": (NUMERIC, {"alpha": 1e-7, "window_size": 300, "stat_size": 100, "seed": 1}),
    "DDM": (MISTAKES, {"drift_threshold": 5.0}),
    "EDDM": (MISTAKES, {"alpha": 0.8, "beta": 0.7}),
    "HDDM_A": (MISTAKES, {"drift_confidence": 1e-6}),
    "HDDM_W": (MISTAKES, {"drift_confidence": 1e-6}),
    "FHDDM": (MISTAKES, {"confidence_level": 1e-9}),
    "CategoricalShift": (CLASSES, {"alpha": 1e-7}),
}
BEFORE, AFTER = 4000, 1500


def test_every_detector_a_spec_can_name_is_in_the_suite() -> None:
    assert set(CASES) == set(DETECTOR_NAMES)
    assert set(CASES) >= BINARY_DETECTORS


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stationary_stream_stays_quiet(name: str) -> None:
    stream, params = CASES[name]
    rng = random.Random(11)
    detector = build(DetectorConfig(name=name, params=params))
    fired = detector.update_many([stream(rng, False) for _ in range(20_000)])
    assert fired == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_known_shift_is_caught_with_evidence(name: str) -> None:
    stream, params = CASES[name]
    rng = random.Random(12)
    detector = build(DetectorConfig(name=name, params=params))
    values = [stream(rng, i >= BEFORE) for i in range(BEFORE + AFTER)]
    fired = detector.update_many(values)
    assert fired, f"{name} missed the shift"
    position, evidence = fired[0]
    assert BEFORE <= position < BEFORE + AFTER
    assert evidence.window_size > 0 and evidence.statistic == evidence.statistic  # not NaN
    assert detector.drift_detected == (fired[-1][0] == len(values) - 1)  # the flag is about the last value


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_survives_snapshot_and_restore(name: str) -> None:
    stream, params = CASES[name]
    rng = random.Random(13)
    config = DetectorConfig(name=name, params=params)
    original = build(config)
    original.update_many([stream(rng, False) for _ in range(BEFORE)])
    restored = build(config)
    restored.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    # the restored one knows the reference: it stays quiet on more of the same and catches the shift
    assert restored.update_many([stream(rng, False) for _ in range(2000)]) == []
    assert restored.update_many([stream(rng, True) for _ in range(AFTER)])


def test_adwin_places_the_change_point_near_the_true_one() -> None:
    rng = random.Random(5)
    detector = build(DetectorConfig(name="ADWIN", params={"delta": 1e-5}))
    fired = detector.update_many([rng.gauss(0 if i < 3000 else 1, 1) for i in range(4000)])
    position, evidence = fired[0]
    assert abs((position - evidence.change_offset) - 3000) <= 30
    assert evidence.reference_mean == pytest.approx(0, abs=0.1) and evidence.window_mean == pytest.approx(1, abs=0.35)
    assert evidence.statistic > evidence.threshold


@pytest.mark.parametrize("seed", range(4))
def test_a_categorical_alarm_places_the_change_where_it_began(seed: int) -> None:
    """Channels of 60/30/10 %, then 40/30/30 % from value 20,000 on: the alarm comes 200–300 values later, and its
    change point (``change_offset`` values before the alarm's) within 50 of the change, where the window's first
    value placed it 200–300 early (a long window's, up to 5,000)."""
    rng = np.random.default_rng(seed)
    detector = CategoricalShift()
    detector.set_run_length(4e9)
    before = rng.choice(["web", "app", "shop"], p=[0.6, 0.3, 0.1], size=20_000).tolist()
    after = rng.choice(["web", "app", "shop"], p=[0.4, 0.3, 0.3], size=5_000).tolist()
    (position, evidence), *_ = detector.update_many(before + after)
    assert 100 < position - 20_000 < 500
    assert abs(position - evidence.change_offset + 1 - 20_000) <= 50


def test_categorical_shift_reports_new_categories() -> None:
    detector = build(DetectorConfig(name="CategoricalShift", params={"alpha": 1e-6}))
    rng = random.Random(2)
    fired = detector.update_many([rng.choice("ab") for _ in range(3000)] + ["zzz"] * 300)
    assert fired and fired[0][1].details["new_categories"] == ["zzz"]


def fired_in_batches(detector: object, values: list, chunk: int) -> list[int]:  # type: ignore[type-arg]
    """Where ``detector.update_many`` fired, fed ``values`` ``chunk`` at a time (positions in ``values``)."""
    batches = (values[start : start + chunk] for start in range(0, len(values), chunk))
    return [
        start + i for start, batch in zip(range(0, len(values), chunk), batches, strict=True)
        for i, _ in detector.update_many(batch)  # type: ignore[attr-defined]
    ]  # fmt: skip


def river_fires(detector: object, values: list[float]) -> list[int]:
    """Where a River detector fires, fed ``values`` one by one with its own ``update``."""
    fired = []
    for i, x in enumerate(values):
        detector.update(x)  # type: ignore[attr-defined]
        if detector.drift_detected:  # type: ignore[attr-defined]
            fired.append(i)
    return fired


@pytest.mark.parametrize("chunk", [1, 37, 5000])
def test_batched_updates_fire_where_one_by_one_updates_fire(chunk: int) -> None:
    """``update_many`` takes shortcuts (ADWIN fed straight into River's Rust window, the categorical window
    slid a run at a time): it must fire at the very positions River's own ``update`` and our ``update`` do,
    over several changes, whatever the batch size. A River release that renames the internals ADWIN's
    shortcut uses fails here."""
    from river import drift

    from driftloop.streams.drift.categorical import CategoricalShift

    rng = random.Random(11)
    numbers = [rng.gauss(mean, 1.0) for mean in (0.0, 1.0, 0.0, 2.0, 2.5) for _ in range(3000)]
    expected = river_fires(drift.ADWIN(delta=1e-4), numbers)
    adwin = build(DetectorConfig(name="ADWIN", params={"delta": 1e-4}))
    assert fired_in_batches(adwin, numbers, chunk) == expected and len(expected) >= 3

    classes = [rng.choice(mix) for mix in ("aab", "abbc", "aab", "abcdd") for _ in range(3000)]
    one_by_one = CategoricalShift(alpha=1e-6)
    expected = [i for i, x in enumerate(classes) if one_by_one.update(x).drift_detected]
    batched = build(DetectorConfig(name="CategoricalShift", params={"alpha": 1e-6}))
    assert fired_in_batches(batched, classes, chunk) == expected and len(expected) >= 3


@pytest.mark.parametrize("chunk", [1, 500, 20_000])
def test_zeros_held_back_change_nothing(chunk: int) -> None:
    """ADWIN holds back zeros that come before any other value (a feature's null rate until its first
    null): fed later, they must make it fire at the very positions River's ADWIN fed one by one does,
    with the same window, and a snapshot taken while zeros are held must restore that window."""
    from river import drift

    rng = random.Random(3)
    rates = [0.0] * 20_000 + [float(rng.random() < 0.2) for _ in range(3000)] + [0.0] * 3000
    river = drift.ADWIN(delta=1e-4)
    expected = river_fires(river, rates)
    adwin = build(DetectorConfig(name="ADWIN", params={"delta": 1e-4}))
    assert fired_in_batches(adwin, rates, chunk) == expected and expected and expected[0] >= 20_000
    assert adwin._detector.width == river.width  # type: ignore[attr-defined]

    held = build(DetectorConfig(name="ADWIN", params={"delta": 1e-4}))
    held.update_many(rates[:19_000])
    restored = build(DetectorConfig(name="ADWIN", params={"delta": 1e-4}))
    restored.restore(held.snapshot())
    assert restored.snapshot() == held.snapshot()
    replayed = drift.ADWIN(delta=1e-4)
    for x in held.snapshot()["values"]:
        replayed.update(x)
    expected = river_fires(replayed, rates[19_000:])
    assert fired_in_batches(restored, rates[19_000:], chunk) == expected and expected


class TextbookCategoricalShift:
    """The chi-square test of CategoricalShift's docstring, one value at a time with plain counters: what the
    detector's numbered count arrays, runs and renumbering must agree with."""

    def __init__(
        self,
        alpha: float,
        window: int = 500,
        reference: int = 2000,
        clock: int = 50,
        long_window: int = 5000,
        max_reference: int = 32_000,
    ) -> None:
        from collections import Counter, deque

        self.alpha, self.window, self.reference, self.clock, self.n = alpha, window, reference, clock, 0
        self.windows = (window, long_window) if long_window else (window,)
        self.max_reference = max_reference
        self.ref: Counter[str] = Counter()
        self.aging: Counter[str] = Counter()  # values that left the longest window, to join the reference
        self.recent: deque[str] = deque(maxlen=max(self.windows))

    def update(self, x: str) -> float | None:
        """The statistic when this value fires (the short window's first), else None."""
        from collections import Counter

        self.n += 1
        if sum(self.ref.values()) < self.reference:
            self.ref[x] += 1
            return None
        if len(self.recent) == self.recent.maxlen and self._growing():
            self.aging[self.recent[0]] += 1  # about to leave the window
        self.recent.append(x)
        if not self.n % self.clock:
            for window in self.windows:
                if len(self.recent) < window or (window != self.window and self.n % (10 * self.clock)):
                    continue
                statistic = self._test(Counter(list(self.recent)[-window:]), self.alpha / len(self.windows))
                if statistic is not None:
                    self.ref, self.aging = Counter(), Counter()
                    self.recent = self.recent.__class__(maxlen=self.recent.maxlen)
                    return statistic
        size = sum(self.ref.values())
        if self._growing() and sum(self.aging.values()) >= min(size, self.max_reference - size):
            self.ref += self.aging  # the reference doubles (or fills up to its maximum)
            self.aging = Counter()
        return None

    def _growing(self) -> bool:
        size = sum(self.ref.values())
        return size < self.max_reference and len(+self.ref) * 5 <= size

    def _test(self, win: Counter[str], level: float) -> float | None:
        from scipy.stats import chi2_contingency

        r, w = sum(self.ref.values()), sum(win.values())
        kept = [
            c
            for c in set(self.ref) | set(win)
            if (self.ref[c] + win[c]) * w >= 5 * (r + w)  # Cochran: expected 5 times
        ]
        pooled = [sum(self.ref[c] for c in self.ref if c not in kept), sum(win[c] for c in win if c not in kept)]
        table = [[self.ref[c] for c in kept], [win[c] for c in kept]]
        if sum(pooled):
            table = [table[0] + [pooled[0]], table[1] + [pooled[1]]]
        if len(table[0]) < 2:
            return None
        statistic, p_value, _, _ = chi2_contingency(table, correction=False)
        return float(statistic) if p_value < level else None


@pytest.mark.parametrize("chunk", [1, 37, 5000])
def test_the_categorical_detector_agrees_with_the_textbook_test_as_its_reference_grows(chunk: int) -> None:
    """Ten categories whose shares move a few points at a time: the reference grows (2,000 values, 4,000, ...
    32,000), both windows are tested, and every firing is the textbook's (its index and statistic); the first
    change is caught within 10,000 values."""

    rng = random.Random(8)
    values: list[str] = []
    for boost in (0.0, 0.06, 0.0, 0.03):  # category c0's share: 10 %, then 15.4 %, 10 %, 12.7 %
        values += ["c0" if rng.random() < boost else f"c{rng.randrange(10)}" for _ in range(40_000)]
    textbook = TextbookCategoricalShift(alpha=1e-6)
    expected = [(i, s) for i, x in enumerate(values) if (s := textbook.update(x)) is not None]
    fired, _ = fed_in_chunks(values, chunk, restart_at=30_000)  # a restart while the reference grows
    assert [i for i, _ in fired] == [i for i, _ in expected] and len(expected) >= 2
    assert [s for _, s in fired] == pytest.approx([s for _, s in expected], rel=1e-9)
    assert 40_000 <= expected[0][0] < 50_000  # the first change (a share of 10 % to 15.4 %) is caught


def fed_in_chunks(values: list[str], chunk: int, *, restart_at: int, coded: bool = False) -> tuple[list, Any]:
    """(index, statistic) of each firing of a CategoricalShift fed ``values`` ``chunk`` at a time (as texts, or
    coded as a frame sends a column), restored from its snapshot at the chunk holding ``restart_at``; and the
    detector."""
    from driftloop.streams.batch import CodedTexts
    from driftloop.streams.drift.categorical import CategoricalShift

    detector = CategoricalShift(alpha=1e-6)
    fired: list[tuple[int, float]] = []
    for start in range(0, len(values), chunk):
        batch = values[start : start + chunk]
        fired += [(start + i, e.statistic) for i, e in detector.update_many(CodedTexts.of(batch) if coded else batch)]
        if start == restart_at // chunk * chunk:
            restored = CategoricalShift(alpha=1e-6)
            restored.restore(detector.snapshot())
            assert restored.snapshot() == detector.snapshot()
            detector = restored
    return fired, detector


@pytest.mark.parametrize(("chunk", "coded"), [(1, False), (37, False), (5000, False), (37, True), (5000, True)])
def test_the_categorical_detector_agrees_with_the_textbook_test_on_many_categories(chunk: int, coded: bool) -> None:
    """A feature of 1,000 values whose mix changes twice, then one of a new value every event (the detector
    renumbers its categories then, and forgets those no longer seen): the same firings, with the same
    statistics, as the plain chi-square test fed one value at a time, whether the values come as texts or
    coded (as a frame sends a categorical feature's column); and a snapshot restores the same state."""

    rng = random.Random(5)
    values = [f"c{int(rng.paretovariate(a)) % 1000}" for a in (1.0, 1.6, 1.0) for _ in range(4000)]
    values += [f"u{i}" for i in range(12_000)]
    textbook = TextbookCategoricalShift(alpha=1e-6)
    expected = [(i, s) for i, x in enumerate(values) if (s := textbook.update(x)) is not None]
    fired, detector = fed_in_chunks(values, chunk, restart_at=6000, coded=coded)  # the state goes on from its snapshot
    assert [i for i, _ in fired] == [i for i, _ in expected] and len(expected) >= 3
    assert [s for _, s in fired] == pytest.approx([s for _, s in expected], rel=1e-9)
    assert len(detector._categories) <= 4 * (2000 + 5000) + 2000  # numbered anew, not one number per value seen


@pytest.mark.parametrize("seed", range(4))
def test_sliding_chi_square_sums_are_the_whole_tables_sums(seed: int) -> None:
    """The categorical detector's tests of many categories update each test's sums from the categories whose
    counts changed since the test before: the same statistics, p-values and degrees of freedom as summing
    every test's whole table, over category counts, windows, clocks and pooling thresholds drawn at random."""
    import numpy as np

    from driftloop.streams.drift.categorical import _sliding_sums, _table_sums, _tests, _window_counts

    rng = np.random.default_rng(seed)
    for _ in range(50):
        k, tests, clock, window = (int(rng.integers(*bounds)) for bounds in ((1, 3000), (1, 60), (1, 80), (10, 600)))
        reference = rng.multinomial(int(rng.integers(50, 3000)), rng.dirichlet(np.full(k, rng.uniform(0.05, 2))))
        ends = window + int(rng.integers(0, 30)) + clock * np.arange(tests)
        values = rng.choice(k, int(ends[-1]) + 5, p=rng.dirichlet(np.ones(k)))
        min_count, total = int(rng.integers(1, 8)), int(reference.sum())
        windows = _window_counts(values, ends, window, k)
        whole = _tests(*_table_sums(reference, windows, window, min_count), total, window)
        sliding = _tests(*_sliding_sums(reference, values, ends, window, min_count), total, window)
        assert sliding[2].tolist() == whole[2].tolist()
        np.testing.assert_allclose(sliding[0], whole[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(sliding[1], whole[1], rtol=1e-8, atol=1e-300)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("back", [True, False])
def test_a_category_mix_that_comes_back_while_the_next_reference_is_learnt_is_a_second_alarm(
    seed: int, back: bool
) -> None:
    """Shares of 50/30/20 % move to 20/30/50 % at 5,000 and come back at 5,700: after the first alarm the next
    reference is learnt from the following 2,000 values, tests off, and the move back was taken into it: never
    an alarm. It is one now (found in that reference), its change within 60 values of 5,700, a's share rising
    again, at the same value whether the values come in batches of 50 or at once; a detector restored from a
    state saved while it searches fires alike; and without the move back none comes in 20,000 values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    moved = np.arange(25_000) >= 5000
    if back:
        moved &= np.arange(25_000) < 5700
    draws = rng.random(25_000)
    values = np.where(draws < np.where(moved, 0.2, 0.5), "a", np.where(draws < np.where(moved, 0.5, 0.8), "b", "c"))
    values = values.tolist()
    in_batches = CategoricalShift(alpha=1e-6)
    fired = [
        (start + i, e) for start in range(0, 25_000, 50) for i, e in in_batches.update_many(values[start : start + 50])
    ]
    assert 5000 <= fired[0][0] < 5500
    if not back:
        assert len(fired) == 1
        return
    (at, evidence), *after = fired[1:]
    assert not after and 5700 <= at < 6300 and abs(at - evidence.change_offset - 5700) <= 60
    before, now = evidence.details["shares_reference_vs_window"]["a"]
    assert now - before > 0.15 and evidence.details["found_in"] == "the reference learnt after an alarm"
    assert [i for i, _ in CategoricalShift(alpha=1e-6).update_many(values)] == [i for i, _ in fired]
    saved = CategoricalShift(alpha=1e-6)
    head = [i for i, _ in saved.update_many(values[: fired[0][0] + 300])]
    restored = CategoricalShift(alpha=1e-6)
    restored.restore(saved.snapshot())
    rest = [fired[0][0] + 300 + i for i, _ in restored.update_many(values[fired[0][0] + 300 :])]
    assert head + rest == [i for i, _ in fired]


@pytest.mark.parametrize("shares", ["three", "zipf"])
def test_the_category_split_s_tail_is_the_approximation_s(shares: str) -> None:
    """The largest of the category split's chi-square statistics over 1,000 values of one mix (three categories,
    or ten of Zipf's shares) passes the level ``split_threshold`` gives for 5 % in about 5 % of 400 streams (a
    factor of two each way allowed): the approximation its threshold of 1e-9 stands on."""
    import numpy as np

    from driftloop.streams.drift.categorical import category_split, split_threshold

    rng = np.random.default_rng(5)
    p = np.array([0.5, 0.3, 0.2]) if shares == "three" else (1 / np.arange(1, 11)) / (1 / np.arange(1, 11)).sum()
    names = [str(c) for c in range(len(p))]
    passed = []
    for _ in range(400):
        split = category_split(rng.choice(len(p), 1000, p=p), names)
        passed.append(split.statistic > split_threshold(split.columns - 1, 1000, 0.05))
    assert 0.025 <= np.mean(passed) <= 0.1, np.mean(passed)


def test_a_category_detector_learns_its_reference_again_when_asked_and_restores_from_an_empty_one() -> None:
    """``learn_again`` (another signal of the same values reported that they moved): the next ``reference``
    values are its reference, and a mix that moved before it raises no alarm against it. A state saved then,
    its reference still empty (as after an alarm on a batch's last value), restores: its counts were added as
    floats to integer arrays, which raised, and the model's whole state was dropped as unreadable."""
    rng = np.random.default_rng(2)
    before = rng.choice(["a", "b", "c"], size=6000, p=[0.5, 0.3, 0.2]).tolist()
    after = rng.choice(["a", "b", "c"], size=20_000, p=[0.3, 0.3, 0.4]).tolist()
    moved, again = CategoricalShift(), CategoricalShift()
    for detector in (moved, again):
        assert detector.update_many(before) == []
    again.learn_again()
    restored = CategoricalShift()
    restored.restore(again.snapshot())
    assert moved.update_many(after) != []
    assert again.update_many(after) == [] and restored.update_many(after) == []
