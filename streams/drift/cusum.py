"""A detector with a false-alarm rate in events: a bank of CUSUM charts calibrated to an expected run length.

River's detectors take a confidence (ADWIN's ``delta``) that says nothing about how often they fire on data
that does not change. :class:`CUSUM` takes ``run_length``, the events expected between two false alarms of
this signal, and sets its thresholds to it **by simulation on the signal's own reference**, as alibi-detect
does for its online detectors:

1. **Reference.** The first ``reference`` values give the mean and standard deviation the charts standardize
   with (a 0/1 signal — a null rate, a classifier's mistakes — is a Bernoulli whose rate is smoothed, so that
   a feature never sent as null still has a rate to exceed).
2. **Charts.** For each allowance ``k`` (in reference standard deviations) an upper and a lower CUSUM,
   ``S = max(0, S ± z - k)``: the chart for ``k`` is quickest for shifts of about ``2k`` (Page 1954), so a
   bank of them covers shifts from slow to abrupt.
3. **Calibration.** A chart's run length grows like ``exp(θ h)`` in its threshold ``h``, where ``θ`` is the
   root of the reference's moment-generating function, ``mean(exp(θ (z - k))) = 1`` — exact for whatever
   shape the reference has (skewed, discrete). The constant in front (the overshoot, Siegmund 1985) is
   measured by simulating the charts on resamples of the reference, at a threshold low enough to simulate;
   the thresholds for the target are extrapolated from there, each chart taking an equal share of it. (A
   0/1 signal's overshoots are simulated at the nearest rate of a grid, and shared: see :func:`_grid_rate`.)
4. **The reference's own error.** A mean estimated from ``n`` values is off by about ``1/√n`` standard
   deviations, and a chart with a small allowance feels it most: averaged over that error, a chart's
   false-alarm rate is ``exp(θ² h² / (2 k² n))`` times the rate with a perfect reference. The thresholds
   include that factor; a chart whose rate cannot meet the target at any threshold (a small ``k`` on a short
   reference) is switched off. A longer reference lets slower drifts be caught at the same run length.

5. **The reference's range.** A numeric reference is held within its 1st and 99th percentiles (:data:`TAIL`),
   and the charts see each later value held within that range (``Calibration.low`` .. ``high``, kept as the
   reference grows: its mean and deviation are those of values so held): the thresholds hold for steps drawn
   from the reference, and a step beyond it is one the simulation never took. A heavy-tailed feature (Pareto,
   Cauchy, a wide lognormal: an amount, a duration) sends now and then a value far past anything in its
   reference, and that one value alone crossed a threshold set for a run length of 1.3e9 events: on stationary
   streams, a false alarm every 100,000 events. Held at the range's edges, where a hundredth of the reference
   lies (not at its extremes, where one value does: the exponential law is drawn from many values there, not
   one), one value moves a chart no more than the reference's own tail values do, and the mean and deviation
   are those of a distribution whose tails are bounded (a heavy tail's sample mean wanders from reference to
   reference far more than ``1/√n``). A shift moves many values, and values past the range in number are a
   drift, each at the range's edge. Alerts report the means of the values as the charts saw them. A rate (0/1)
   or a constant reference is not held; the reference's growth (below) sums the values as the charts see them.

After an alarm the chart that fired says where the change began (its last zero); the values since then start
the next reference, as ADWIN's window restarts after a cut. While that reference is learnt the charts are off,
so the reference itself is searched for a change of its own (:func:`reference_split`): a feature that moved
again, or back, a few hundred values after the alarm was taken into the next reference and never seen.

A model's signals take a batch's values at once: :func:`update_together` runs the charts of many detectors in
one pass, as each would run them alone.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> detector = CUSUM(run_length=1e7, reference=2000)
>>> stream = np.concatenate([rng.normal(size=12_000), rng.normal(1.0, 1.0, size=1000)])
>>> fired = detector.update_many(stream.tolist())
>>> [(i - 12_000 < 80, 12_000 - 40 < i - e.change_offset < 12_000 + 40) for i, e in fired]
[(True, True)]
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from driftloop.streams.drift.evidence import Evidence

#: Allowances of the default bank, in reference standard deviations: quickest for shifts of 0.2 to 2 sd.
ALLOWANCES = (0.1, 0.25, 0.5, 1.0)
#: A numeric chart whose largest step on its reference, ``max(side · z) - k``, is within this many standard
#: errors (``1 / √n``) of zero is off, as one the reference cannot move at all is. Its exponent is then huge
#: and its threshold near 0, and both stand on where the reference's edge lies in standard units, which the
#: mean's and the spread's estimation errors move by about that much. A classifier's scores piled up just
#: below 1.0 put the threshold of its upper chart for 0.5 sd at 0.013; once the reference had doubled, one
#: score of 0.9999 crossed it: a false alarm 2,000 events in, at a run length of 3.4e9 events.
EDGE = 3.0
#: A numeric chart for allowance ``k`` is quickest for a shift of ``2 k`` standard deviations; one whose signal
#: has no room for it (the reference's edge on its side, ``side · z``, nearer the mean than ``(1 + ROOM) k``) is
#: off. A feature's spread, ``|x - centre|``, lies above 0, often less than a standard deviation below its mean:
#: its lower chart for 1 sd, the only chart near that edge, could move up by 0.15 a value at most; its
#: threshold, drawn from the exponential law where a few values cross it, was 0.53, and four small values in
#: a row raised a false alarm (on stationary streams, ten times as often as its run length said).
ROOM = 1.0
#: Which charts watch: both sides, or the upper (lower) ones only, which then take the whole run length. A
#: model's error watches ``up``: an error that falls is a model doing better, not a drift to answer.
DIRECTIONS = {"both": (1, -1), "up": (1,), "down": (-1,)}
#: A numeric reference is held within its quantiles at TAIL and 1 - TAIL, and so is every value the charts see
#: after it (module docstring, 5.).
TAIL = 0.01
DECILES = np.linspace(0.1, 0.9, 9)
_SIMULATED_RUN = 100.0  # events: each chart's run length where the overshoot is measured
_GUESSED_OVERSHOOT = 1.166  # a Gaussian walk's (Siegmund's 0.583 at each barrier): where the simulation starts
_STREAMS, _STEPS = 128, 1500  # the simulation's resampled streams and their length
_CHUNK = 200  # steps the simulated streams are run at a time (most alarm in the first)
_BANK_BYTES = 1 << 20  # the sums of the detectors whose charts run together at a time (in a core's cache)


#: A reference learnt after an alarm is searched for a change at each update (:func:`reference_split`): each side
#: of a split holds at least SPLIT_SIDE values, and a split whose statistic passes SPLIT_THRESHOLD is an alarm.
#: Under no change the statistic is a Brownian bridge's largest excursion, ``P(> x) ≈ 2 exp(-2 x²)`` (1.3e-9 at
#: 3.25) a look; looked at every 10 values over 2,000, N(0,1), a wide lognormal held at its TAIL quantiles,
#: Poisson(0.3) and a 1 % rate passed 2.5 in none of 2,000 runs each, and 2.0 in 0.2 to 0.9 %. A reference is
#: learnt after an alarm only, so its false alarms are a fraction of the alarms before it.
SPLIT_SIDE = 100
SPLIT_THRESHOLD = 3.25
#: The reference is looked at each time it holds a multiple of this many values (whatever the batches: an
#: alarm at the same value however the values come).
SPLIT_LOOK = 10


class Split(NamedTuple):
    """A change within a reference (:func:`reference_split`): its first value, the statistic, and the values'
    mean before and after it and deviation before it (held as the reference is: module docstring, 5.)."""

    at: int
    statistic: float
    before: float
    after: float
    before_std: float


def reference_split(values: Sequence[float] | np.ndarray, sides: tuple[int, ...] = (1, -1)) -> Split | None:
    """Where ``values`` change level, when they do: their :func:`largest_split`, where its statistic passes
    :data:`SPLIT_THRESHOLD`; None when they hold one level. ``sides``: the directions of change looked for
    (``(1,)``: a rise only).

    >>> rng = np.random.default_rng(1)
    >>> reference_split(rng.normal(size=2000)) is None
    True
    >>> split = reference_split(np.concatenate([rng.normal(size=400), rng.normal(1.0, 1.0, size=300)]))
    >>> abs(split.at - 400) < 30, split.statistic > 5, round(split.after - split.before)
    (True, True, 1)
    >>> reference_split(np.concatenate([rng.normal(size=400), rng.normal(-1.0, 1.0, size=300)]), sides=(1,))
    """
    split = largest_split(values, sides)
    return split if split is not None and split.statistic > SPLIT_THRESHOLD else None


def looks(held: int, new: int) -> range:
    """The sizes a reference holding ``held`` values, ``new`` of them just come, is looked at with: each
    multiple of :data:`SPLIT_LOOK` among the new values' places, from ``2 * SPLIT_SIDE`` on.

    >>> list(looks(230, 50)), list(looks(1005, 3)), list(looks(150, 150))
    ([200, 210, 220, 230], [], [])
    """
    first = max(held - new + 1, 2 * SPLIT_SIDE)
    return range(-(-first // SPLIT_LOOK) * SPLIT_LOOK, held + 1, SPLIT_LOOK)


class _Placed(Protocol):
    at: int  # the first value after the change


_S = TypeVar("_S", bound=_Placed)


def first_change(
    values: np.ndarray, new: int, search: Callable[[np.ndarray], _S | None], largest: Callable[[np.ndarray], _S | None]
) -> tuple[int, _S, _S] | None:
    """A reference's ``values`` (``new`` of them just come) looked at as :func:`looks` says, the first look at
    which ``search`` finds a change: how many values it looked at, the change found then, and the change placed
    by all the values (their ``largest`` split where it lies before that look, else the one found); None where
    no look finds one. The same for a number's reference (:func:`reference_split`) and a category's
    (``streams.drift.categorical``)."""
    for seen in looks(len(values), new):
        first = search(values[:seen])
        if first is not None:
            whole = largest(values)
            return seen, first, whole if whole is not None and whole.at < seen else first
    return None


def largest_split(values: Sequence[float] | np.ndarray, sides: tuple[int, ...] = (1, -1)) -> Split | None:
    """The split of ``values`` with the largest difference between the sums of the values before it and their
    share of the whole (a CUSUM of the deviations from the mean, the binary-segmentation statistic), in the
    values' deviation times the square root of their count, each side at least :data:`SPLIT_SIDE` values; None
    for fewer values, or one value throughout. The values are held within their :data:`TAIL` quantiles (a rate's
    are not)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2 * SPLIT_SIDE:
        return None
    if not _zero_one(x):
        low, high = np.quantile(x, (TAIL, 1 - TAIL))
        x = np.clip(x, low, high)
    mean = float(x.mean())
    std = max(float(x.std(ddof=1)), abs(mean) * RESOLUTION)  # values a rounding apart are one (RESOLUTION)
    if not std > 0 or x.min() == x.max():
        return None
    # the sum of the first k values less k times the mean: negative where the values after them are higher
    walk = np.cumsum(x - mean)[SPLIT_SIDE - 1 : n - SPLIT_SIDE]
    rise = -walk if 1 in sides else np.full(len(walk), -np.inf)
    moved = np.maximum(rise, walk) if -1 in sides else rise
    best = int(np.argmax(moved))
    statistic = float(moved[best]) / (std * math.sqrt(n))
    at = best + SPLIT_SIDE
    return Split(at, statistic, float(x[:at].mean()), float(x[at:].mean()), float(x[:at].std(ddof=1)))


_LAWS = ("thetas", "overshoots")  # a calibration's numbers that may be infinite (a chart the reference cannot move)
_BOUNDS = ("low", "high")  # and its range's ends (none: infinite)


@dataclass(frozen=True)
class Calibration:
    """What a reference taught the charts: how to standardize, and each chart's run length law."""

    mean: float  # the centre values are standardized with (a Bernoulli's smoothed rate)
    std: float
    observed_mean: float  # the reference's plain mean (what alerts report)
    size: int
    sides: tuple[int, ...]  # +1: the upper chart, -1: the lower one
    allowances: tuple[float, ...]
    thetas: tuple[float, ...]  # each chart's exponent (inf: the reference cannot move it)
    overshoots: tuple[float, ...]  # Siegmund's rho, measured by simulation
    rate: bool = False  # a 0/1 signal (its laws follow its rate: recalibrated, not rescaled, as it grows)
    # the range the values are held within (docstring, 5.): the reference's, which its growth keeps
    low: float = -math.inf
    high: float = math.inf
    # the reference's deciles (a numeric reference's: none for a rate or a constant), where a feature's shape
    # signal cuts its values into bins (``streams.drift.extract``)
    deciles: tuple[float, ...] = ()

    def thresholds(self, run_length: float, sides: tuple[int, ...] = (1, -1)) -> np.ndarray:
        """Each chart's threshold so that the bank's false alarms come every ``run_length`` values on average
        (``inf``: the chart is off; all ``0``: a constant reference, which any other value changes). Only the
        charts of ``sides`` are on (``(1,)``: the upper ones), and they share the whole run length.

        The charts' rates are added up as if their alarms never coincided: they do (the upper charts for
        0.25 and 0.5 see the same excursions), so the bank's run length is somewhat longer than asked. A
        chart the reference cannot move (an increment never positive: the edge of a bounded feature) is off,
        as is a chart that cannot meet its share at any threshold."""
        watched = [side in sides for side in self.sides]
        if not any(map(math.isfinite, self.thetas)):
            return np.where(watched, 0.0, math.inf)
        finite = [math.isfinite(t) and w for t, w in zip(self.thetas, watched, strict=True)]
        feasible = finite
        for _ in range(2):  # the charts that can meet their share, then the shares of those that can
            per_chart = run_length * max(sum(feasible), 1)
            bounds = [
                _threshold(t, k, rho, self.size, per_chart) if f else math.inf
                for t, k, rho, f in zip(self.thetas, self.allowances, self.overshoots, finite, strict=True)
            ]
            meeting = [math.isfinite(b) for b in bounds]
            if meeting == feasible:
                break  # every chart given a share meets it: the shares stand
            feasible = meeting
        return np.array(bounds)

    def as_dict(self) -> dict[str, Any]:
        """Its fields as JSON-ready data (tuples of numbers as lists; a chart's exponent or overshoot that is not
        finite as its name, ``"inf"``, which JSON has no number for): ``dataclasses.asdict`` deep-copied every
        number, three fifths of a model's state save."""
        data = {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}
        for key in _LAWS:
            data[key] = [law if math.isfinite(law) else repr(float(law)) for law in data[key]]
        for key in _BOUNDS:
            data[key] = data[key] if math.isfinite(data[key]) else repr(float(data[key]))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        fields = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        for key in _LAWS:
            fields[key] = tuple(map(float, fields[key]))  # "inf" (or inf, as states before read back)
        for key in _BOUNDS:
            if key in fields:  # a state saved before the range: unbounded, as it ran
                fields[key] = float(fields[key])
        return cls(**fields)

    @property
    def bounded(self) -> bool:
        """Whether values are held within a range before the charts see them."""
        return self.low > -math.inf or self.high < math.inf


@dataclass(frozen=True)
class Moments:
    """Count, mean and standard deviation of a reference longer than the values kept to resample."""

    count: int
    mean: float
    std: float


def calibrate(
    reference: Sequence[float],
    allowances: Sequence[float] = ALLOWANCES,
    *,
    seed: int = 0,
    moments: Moments | None = None,
) -> Calibration:
    """Measure ``reference`` (see the module docstring): the calibration the thresholds are taken from.
    With ``moments``, ``reference`` gives the shape only (it is resampled) and ``moments`` the location, the
    scale and the count whose estimation error the thresholds allow for.

    >>> import numpy as np
    >>> cal = calibrate(np.random.default_rng(0).normal(size=4000))
    >>> [round(t, 1) for t in cal.thetas[:3]]  # Gaussian: theta = 2k
    [0.2, 0.5, 1.0]
    >>> h = cal.thresholds(1e6); bool(h[0] > h[1] > h[2] > h[3] > 0)  # a smaller allowance waits longer
    True
    """
    values = np.asarray(reference, dtype=float)
    if len(values) < 2:
        raise ValueError("a CUSUM reference needs at least 2 values")
    whole = moments or Moments(len(values), float(values.mean()), float(values.std(ddof=1)))
    ones = whole.mean * whole.count
    if _zero_one(values) and abs(ones - round(ones)) < 1e-6 and 0 <= round(ones) <= whole.count:
        # a rate: Bernoulli, known by its count and its ones (a model's null rates share it); a feature of 0s
        # and 1s whose reference grew with a 2 is a number, its first values the shape
        return _calibrate_rate(whole.count, round(ones), tuple(allowances), seed)
    std = resolved_std(whole)
    # a constant has no shape: its own std is rounding (4,000 copies of 0.7311 have a mean 1 ulp off theirs),
    # and dividing by it made every point 1, a chart that never comes down (a stuck sensor after an alarm)
    own_std = float(values.std(ddof=1)) if values.min() < values.max() else 0.0
    shape = _standardized(values, own_std) if own_std > 0 else np.zeros(len(values))
    laws = _calibrate(shape, np.full(len(values), 1.0 / len(values)), whole, std, tuple(allowances), seed)
    if not own_std > 0:
        return laws
    deciles = tuple(np.quantile(values, DECILES).tolist())
    return dataclasses.replace(laws, low=float(values.min()), high=float(values.max()), deciles=deciles)


#: The largest magnitude a chart takes a value at: past it, a value is taken at it. The squares of values past
#: 1e154 are past the largest float, and a reference of them had an infinite variance (an alarm every batch).
MAGNITUDE = 1e150


def within_magnitude(values: np.ndarray, *, copied: bool = False) -> np.ndarray:
    """``values`` held within ±:data:`MAGNITUDE` (NaN kept), in place when ``copied`` (the caller's own)."""
    return np.clip(values, -MAGNITUDE, MAGNITUDE, out=values if copied else None)


#: The smallest standard deviation a chart takes, relative to the reference's mean: values that differ by
#: rounding (0.3 and 0.1 + 0.2, a ratio computed two ways) are one value, and a constant's charts see a change
#: of this size. Below it the charts standardized rounding error, and alarmed every few thousand events.
RESOLUTION = 1e-9


def resolved_std(moments: Moments) -> float:
    """The standard deviation the charts divide by: at least :data:`RESOLUTION` of the mean (a constant's: of
    the mean, or 1e-12 about 0, where any change counts)."""
    if moments.std > 0:
        return max(moments.std, abs(moments.mean) * RESOLUTION)
    return max(abs(moments.mean) * RESOLUTION, 1e-12)


def _standardized(values: np.ndarray, std: float) -> np.ndarray:
    """``values`` at mean 0 and standard deviation 1. Values a few ulps apart (0.3 and 0.1 + 0.2) have a mean
    rounded onto one of them, and their deviations all on one side (0 and 2 standard deviations): standardized
    once more, as a chart's exponent has no root for points that do not centre on 0."""
    shape = (values - values.mean()) / std
    centre = float(shape.mean())
    if abs(centre) > 1e-6:
        shape = shape - centre
        shape = shape / float(shape.std(ddof=1))
    return shape


def _zero_one(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1: a rate's events (:func:`calibrate` takes them as a Bernoulli)."""
    return bool(np.isin(values, (0.0, 1.0)).all())


@functools.lru_cache(maxsize=256)
def _calibrate_rate(size: int, ones: int, allowances: tuple[float, ...], seed: int) -> Calibration:
    """A 0/1 signal's calibration: its rate smoothed, so that a rate never seen in the reference is not zero.

    Its exponents are its own rate's. Its overshoots are those simulated at the nearest rate of a grid
    (:func:`_grid_rate`), shared by every rate signal there: a rate is calibrated again each time its reference
    doubles, and each signal's own simulation made most of a model's detection CPU while its null rates
    learnt (5.5 ms a calibration, 56 % of the detection of 75,000 events of a model whose features are
    sometimes left out)."""
    rate = (ones + 1.0) / (size + 2.0)
    points, weights, std = _bernoulli(rate)
    sides, ks = _charts(allowances)
    thetas = _thetas(points, weights, sides, ks)
    overshoots = _rate_overshoots(_grid_rate(rate), allowances, seed)
    return Calibration(rate, std, ones / size, size, sides, ks, thetas, overshoots, rate=True)


#: The rate grid's step, in log odds: neighbouring rates of a few per cent 5 % apart (2.5 % at most from the nearest).
_RATE_GRID_STEP = 0.05


def _grid_rate(rate: float) -> float:
    """The rate of the grid nearest to ``rate`` (in ``(0, 1)``), evenly spaced in log odds.

    A rate's standardized steps, ``(1 - p) / σ`` and ``-p / σ``, move by about half as much as ``p`` does
    relatively, and its overshoots jitter by some 10 % between rates 2.5 % apart (a 0/1 walk's lattice meets
    the simulated threshold at other places): the overshoot measured at the grid's rate is as close to the
    rate's own as a neighbouring rate's is. A lower chart whose allowance is about ``√(p / (1 - p))`` may be off
    at one rate and on at the other: on at the rate only, it takes an overshoot of 0 (a higher threshold, fewer
    alarms); off at the rate, its overshoot is not read."""
    steps = round(math.log(rate / (1.0 - rate)) / _RATE_GRID_STEP)
    return 1.0 / (1.0 + math.exp(-steps * _RATE_GRID_STEP))


@functools.lru_cache(maxsize=1024)
def _rate_overshoots(rate: float, allowances: tuple[float, ...], seed: int) -> tuple[float, ...]:
    """The overshoots of a rate's charts (:func:`_simulate`)."""
    points, weights, _ = _bernoulli(rate)
    sides, ks = _charts(allowances)
    return _simulate(points, weights, sides, ks, _thetas(points, weights, sides, ks), seed)


def _bernoulli(rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A rate's two standardized values, their weights and its standard deviation."""
    std = math.sqrt(rate * (1.0 - rate))
    return np.array([-rate / std, (1.0 - rate) / std]), np.array([1.0 - rate, rate]), std


def _charts(allowances: tuple[float, ...]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The bank's charts: each one's side (the upper charts first) and allowance."""
    return tuple(side for side in (1, -1) for _ in allowances), tuple(float(k) for _ in (1, -1) for k in allowances)


def _calibrate(
    points: np.ndarray,
    weights: np.ndarray,
    whole: Moments,
    std: float,
    allowances: tuple[float, ...],
    seed: int,
) -> Calibration:
    """The charts' laws on standardized ``points`` (with ``weights``), for a reference of ``whole``: a chart
    whose largest step on the reference is within :data:`EDGE` standard errors of zero is off (see there), and
    so is one for a shift its range cannot hold (:data:`ROOM`)."""
    sides, ks = _charts(allowances)
    thetas = _thetas(points, weights, sides, ks, margin=np.maximum(EDGE / math.sqrt(whole.count), ROOM * np.array(ks)))
    overshoots = _simulate(points, weights, sides, ks, thetas, seed)
    return Calibration(whole.mean, std, whole.mean, whole.count, sides, ks, thetas, overshoots)


def _thetas(
    points: np.ndarray,
    weights: np.ndarray,
    sides: tuple[int, ...],
    ks: tuple[float, ...],
    margin: float | np.ndarray = 0.0,
) -> tuple[float, ...]:
    """Each chart's exponent: the positive root of ``K(t) = log E[exp(t (side · Z - k))] = 0`` (inf when
    ``side · Z - k`` is never above ``margin``, one for every chart or one each), every chart's at once.

    ``K`` is convex, 0 at 0 and falling there (``K'(0) = -k``): negative up to the root, rising after it. From
    a point past the root (doubled until ``K`` is positive) Newton's method comes down to it monotonically,
    in five or six steps."""
    steps = np.multiply.outer(np.asarray(sides, dtype=float), points) - np.asarray(ks)[:, None]
    top = steps.max(axis=1)
    thetas = np.full(len(ks), math.inf)
    moving = top > margin
    if not moving.any():
        return tuple(thetas.tolist())
    steps, top = steps[moving], top[moving]
    below_top = steps - top[:, None]  # exponents never above 0: no overflow for any t
    log_w = np.log(weights)

    def cumulant(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``K(t)`` and ``K'(t)`` of every chart."""
        tilted = np.exp(t[:, None] * below_top + log_w)
        total = tilted.sum(axis=1)
        return t * top + np.log(total), (tilted * steps).sum(axis=1) / total

    t = np.ones(len(top))
    value, slope = cumulant(t)
    while (value <= 0).any():
        t = np.where(value <= 0, 2 * t, t)
        value, slope = cumulant(t)
    for _ in range(100):
        step = value / slope
        t = t - step
        if (np.abs(step) <= 1e-13 * t).all():
            break
        value, slope = cumulant(t)
    thetas[moving] = t
    return tuple(thetas.tolist())


def _threshold(theta: float, k: float, rho: float, size: int, run_length: float) -> float:
    """The smallest ``h`` whose rate, averaged over the reference mean's error, is 1/``run_length`` (inf: none).

    ``b = h + ρ`` solves ``log((exp(θb) - θb - 1) / (θk)) - a b² / 2 = log(run_length)`` (Siegmund's run
    length, less the penalty), whose left side is concave and rising up to ``top``: Newton's method started
    left of the root stays left of it and climbs to it, in two to five steps from :func:`_below_root` (7 times
    quicker than bracketing; every chart's threshold is solved again each time its reference doubles)."""
    a = theta**2 / (k**2 * size)  # the error's penalty: log rate grows by a b² / 2
    target = math.log(run_length) + math.log(theta * k)
    top = theta / a  # where the penalized log run length peaks
    if _penalized(theta, a, top)[0] < target:
        return math.inf
    b = _below_root(theta, a, target)
    for _ in range(100):
        value, slope = _penalized(theta, a, b)
        step = (target - value) / slope
        b = min(b + step, top)
        if abs(step) <= 1e-13 * b:
            break
    return max(b - rho, 0.0)


def _penalized(theta: float, a: float, b: float) -> tuple[float, float]:
    """``log(exp(θb) - θb - 1) - a b² / 2`` and its derivative in ``b``."""
    x = theta * b
    if x >= 700:
        return x - a * b * b / 2, theta - a * b
    grown = math.expm1(x)
    excess = grown - x
    return math.log(excess) - a * b * b / 2, theta * grown / excess - a * b


def _below_root(theta: float, a: float, target: float) -> float:
    """A ``b`` left of the root of :func:`_threshold`'s equation, from a bound on its left side that is easy to
    solve: ``log(exp(x) - x - 1)`` is below ``x`` (the smaller root of ``θb - a b² / 2 = target``), and below
    ``2 log x`` for ``x <= 1`` (where ``target <= 0``)."""
    if target > 0:
        return 2 * target / (theta + math.sqrt(theta * theta - 2 * a * target))  # the stable form of the root
    return math.exp(target / 2) / theta


def _simulate(
    points: np.ndarray,
    weights: np.ndarray,
    sides: tuple[int, ...],
    ks: tuple[float, ...],
    thetas: tuple[float, ...],
    seed: int,
) -> tuple[float, ...]:
    """Run the charts on resamples of the reference at thresholds where alarms come about every
    ``_SIMULATED_RUN`` values: each chart's overshoot, from the run length measured there.

    Each threshold is the law's for that run with a first guess at the overshoot (a Gaussian walk's, at most
    half the threshold). Without one, the charts of the larger allowances ran three to eight times longer
    than asked, most of the simulation's work, and a quarter of their streams had no alarm within ``_STEPS``:
    their run lengths were cut short, and their overshoots measured short with them."""
    if np.allclose(weights, weights[0]):
        picks = _uniform_picks(len(points), seed)
    elif len(points) == 2:  # a rate: its ones where the seed's draws pass its zeros' weight
        picks = np.greater_equal(_uniform_draws(seed), weights[0]).view(np.uint8)
    else:
        picks = np.searchsorted(np.cumsum(weights[:-1]), _uniform_draws(seed), side="right")
    walks = _Walks(points, picks)
    overshoots = []
    for side, k, theta in zip(sides, ks, thetas, strict=True):
        if not math.isfinite(theta):
            overshoots.append(0.0)
            continue
        bound = _threshold(theta, k, 0.0, 1 << 62, _SIMULATED_RUN)
        h = bound - min(_GUESSED_OVERSHOOT, bound / 2)
        measured = float(_first_alarms(walks, side, k, h).mean())
        overshoots.append(_threshold(theta, k, 0.0, 1 << 62, measured) - h if measured > 1 else 0.0)
    return tuple(overshoots)


@functools.lru_cache(maxsize=8)
def _uniform_picks(size: int, seed: int) -> np.ndarray:
    """The places a simulation resamples a reference of ``size`` values at, each as likely, from a generator
    seeded with ``seed``: the same for every signal of a model, which learn their references together (an
    eighth of a calibration's time, drawn once)."""
    picks = np.random.default_rng(seed).integers(0, size, size=(_STREAMS, _STEPS))
    picks.flags.writeable = False
    return picks


@functools.lru_cache(maxsize=8)
def _uniform_draws(seed: int) -> np.ndarray:
    """Uniform draws in ``[0, 1)`` a resampling of a weighted reference is made from, seeded with ``seed``: the
    same at every rate, so overshoots measured at neighbouring rates differ by their rates only (a weighted
    ``choice`` drawn for each cost half of a rate's calibration)."""
    draws = np.random.default_rng(seed).random((_STREAMS, _STEPS))
    draws.flags.writeable = False
    return draws


class _Walks:
    """The running sums ``W`` of the resampled streams ``points[picks]`` (streams × steps), made a chunk of
    ``_CHUNK`` steps at a time when a chart first runs that far: every chart's sums are ``side · W - k · t``,
    so the charts share one running sum (and one gather) instead of one each."""

    def __init__(self, points: np.ndarray, picks: np.ndarray) -> None:
        self.points, self.picks = points, picks
        self._chunks: list[np.ndarray] = []

    def chunk(self, index: int) -> np.ndarray:
        """``W`` over the steps ``index · _CHUNK`` to ``(index + 1) · _CHUNK`` (as a cumsum of whole streams)."""
        while len(self._chunks) <= index:
            start = len(self._chunks) * _CHUNK
            sums = self.points[self.picks[:, start : start + _CHUNK]]
            if self._chunks:
                sums[:, 0] += self._chunks[-1][:, -1]
            self._chunks.append(np.cumsum(sums, axis=1, out=sums))
        return self._chunks[index]


def _first_alarms(walks: _Walks, side: int, k: float, h: float) -> np.ndarray:
    """Each stream's run length to its first alarm (``steps`` when it has none) for the chart ``side``, ``k``,
    ``h`` over the streams of ``walks``.

    The streams are run ``_CHUNK`` steps at a time and only those without an alarm go on: at a run length of
    about ``_SIMULATED_RUN`` few are left after the first chunks. Each value is the one running every stream
    to the end gives, so the run lengths are the same to the bit."""
    streams, steps = walks.picks.shape
    lengths = np.full(streams, steps)
    going = np.arange(streams)
    low = np.zeros(streams)  # the lowest each going stream's sum has been (or 0)
    for index, start in enumerate(range(0, steps, _CHUNK)):
        walk = walks.chunk(index)
        walk = walk if len(going) == streams else walk[going]
        drift = k * _counts(start + walk.shape[1])[start:]
        # side · W - k · t in one pass: W - k t for the upper chart, -k t - W for the lower (the same floats)
        sums = np.subtract(walk, drift) if side > 0 else np.subtract(-drift, walk)
        lows = np.minimum.accumulate(sums, axis=1)
        np.minimum(lows, low[:, None], out=lows)
        over = np.greater(np.subtract(sums, lows, out=sums), h)
        first = over.argmax(axis=1)  # each stream's first alarm in the chunk (0 where it has none)
        alarmed = over[np.arange(len(first)), first]
        lengths[going[alarmed]] = start + 1 + first[alarmed]
        going, low = going[~alarmed], lows[~alarmed, -1]
        if not len(going):
            break
    return lengths


_ONE_BITS = np.array(1.0, dtype="<f8").view("<u8")  # 1.0 as the bits it is stored in


def pack_floats(values: np.ndarray) -> dict[str, Any]:
    """Values for a saved state: their float64 bytes in base64 (writing each as JSON text cost the detection
    process a fifth of its time; this is exact, and smaller), or, when every one is 0.0 or 1.0 (a rate's
    reference), a bit each.

    >>> pack_floats(np.array([0.5, -2.0]))
    {'float64': 'AAAAAAAA4D8AAAAAAAAAwA=='}
    >>> pack_floats(np.array([1.0, 0.0, 0.0, 1.0]))
    {'bits': 'kA==', 'size': 4}
    >>> unpack_floats(pack_floats(np.array([0.1, math.inf]))).tolist(), unpack_floats([0.1, 2]).tolist()
    ([0.1, inf], [0.1, 2.0])
    >>> unpack_floats(pack_floats(np.array([1.0, 0.0, 1.0]))).tolist(), unpack_floats(pack_floats(np.array([-0.0])))
    ([1.0, 0.0, 1.0], array([-0.]))
    """
    if not len(values):  # most signals' reference values once calibrated: a few µs of numpy calls spared
        return {"float64": ""}
    array = np.ascontiguousarray(values, dtype="<f8")
    words = array.view("<u8")
    ones = words == _ONE_BITS
    if (ones | (words == 0)).all():  # the bits of 0.0 and 1.0 exactly (not -0.0)
        return {"bits": base64.b64encode(np.packbits(ones).tobytes()).decode("ascii"), "size": len(array)}
    return {"float64": base64.b64encode(array.tobytes()).decode("ascii")}


def unpack_floats(saved: dict[str, Any] | list[float]) -> np.ndarray:
    """Values saved by :func:`pack_floats`, or as a JSON list (states saved before it)."""
    if isinstance(saved, dict) and "bits" in saved:
        bits = np.frombuffer(base64.b64decode(saved["bits"]), dtype=np.uint8)
        return np.unpackbits(bits, count=int(saved["size"])).astype(float)
    if isinstance(saved, dict):
        return np.frombuffer(base64.b64decode(saved["float64"]), dtype="<f8").astype(float)
    return np.asarray(saved, dtype=float)


_FIRST_RING = 64  # values a ring holds room for at first


class _Recent:
    """The last ``capacity`` values, in a ring of that many (what an alarm's window is read from): a model of 35
    signals held twice as many, 1.1 MB, in buffers that moved their values to the front when full.

    >>> recent = _Recent(4)
    >>> recent.extend(np.arange(3.0)); recent.extend(np.arange(3.0, 6.0))
    >>> recent.last(3).tolist(), recent.last(9).tolist(), recent.size
    ([3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0], 4)
    >>> grown = _Recent(1000)
    >>> for start in range(0, 1500, 100): grown.extend(np.arange(start, start + 100.0))
    >>> grown.last(2).tolist(), float(grown.last(2000)[0]), grown.size
    ([1498.0, 1499.0], 500.0, 1000)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # grown as values come (up to ``capacity``): a model that sent one event held 300 KB of rings, and a
        # producer of many model names (one event each) filled the detection process's memory
        self._ring = np.empty(min(capacity, _FIRST_RING))
        self.size = 0  # values held
        self._next = 0  # where the next value goes

    def extend(self, values: np.ndarray) -> None:
        if not len(values) or not self.capacity:
            return
        n, at = len(values), self._next
        if at + n > len(self._ring) and len(self._ring) < self.capacity:  # still filling from 0: never wrapped
            grown = np.empty(min(self.capacity, max(2 * len(self._ring), at + n)))
            grown[:at] = self._ring[:at]
            self._ring = grown
        if at + n <= len(self._ring):  # the common case: before the ring's end (a batch's part of a signal)
            self._ring[at : at + n] = values
        else:
            values = values[-self.capacity :]
            n = len(values)
            first = min(n, self.capacity - at)  # up to the ring's end, the rest from its start
            self._ring[at : at + first] = values[:first]
            self._ring[: n - first] = values[first:]
        self._next = (at + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def last(self, n: int) -> np.ndarray:
        n = min(n, self.size)
        start = self._next - n
        if start >= 0:
            return self._ring[start : self._next].copy()
        return np.concatenate((self._ring[start:], self._ring[: self._next]))


class _Running:
    """The charts that are on: what :meth:`CUSUM._run` takes of them for every run (made anew when the thresholds
    change)."""

    def __init__(self, on: np.ndarray, sides: np.ndarray, allowances: np.ndarray, thresholds: np.ndarray) -> None:
        self.index = np.flatnonzero(on)
        self.rows = np.arange(len(self.index))
        self.sides = sides[on]
        self.allowances = allowances[on, None]
        self.thresholds = thresholds[on]

    def drifts(self, n: int) -> np.ndarray:
        """Each chart's allowance added up over ``n`` values: ``k · (1, 2, ..., n)``."""
        return self.allowances * _counts(n)


def _counts(n: int) -> np.ndarray:
    """``1.0, 2.0, ..., n``: a view of an array shared by every chart (one a power of two of lengths)."""
    return _counts_up_to(max(4096, 1 << (n - 1).bit_length()))[:n]


@functools.lru_cache(maxsize=32)
def _counts_up_to(size: int) -> np.ndarray:
    counts = np.arange(1, size + 1, dtype=float)
    counts.flags.writeable = False
    return counts


class CUSUM:
    """CUSUM charts whose false alarms come every ``run_length`` values on average (module docstring).

    ``run_length`` may be changed at any time (the monitor sets it from the model's rate); the thresholds
    follow without a new calibration. The charts start after ``reference`` values; the reference then keeps
    every value that follows, up to ``max_reference``, and the location, the scale and the thresholds are
    refreshed each time it has doubled: its estimation error shrinks, the thresholds with it, and the charts
    for the slowest drifts, off at first, come on. (A drift that begins while the reference still grows is
    partly taken into it, diluted by everything before.)

    ``direction`` ``"up"`` (``"down"``) keeps only the upper (lower) charts on, and they take the whole run
    length: a model's error is watched for a rise only.
    """

    name = "CUSUM"
    calibrated = True  # its run length is its false-alarm rate: no confirmation needed
    #: Whether the reference learnt after an alarm is searched for a change of its own (:func:`reference_split`),
    #: whose law holds for values independent of one another: a running statistic's converge after a change,
    #: a trend the search takes for a second one (a mean shift's score, 1.03 → 1.39 as its means caught up).
    search_reference = True

    @classmethod
    def default_params(cls, *, alpha: float, reference: int) -> dict[str, Any]:
        """The reference is learnt from the model's warm-up (``reference`` values)."""
        return {"reference": reference}

    @classmethod
    def from_config(cls, config: Any) -> CUSUM:
        return cls(**config.params)

    def __init__(
        self,
        run_length: float = 1e8,
        reference: int = 2000,
        allowances: Sequence[float] = ALLOWANCES,
        seed: int = 0,
        replay: int = 2000,
        max_reference: int = 64_000,
        direction: str = "both",
    ) -> None:
        if not run_length > 1:
            raise ValueError(f"run_length must be more than 1 event, got {run_length}")
        if reference < 2:
            raise ValueError(f"reference must be at least 2 values, got {reference}")
        if not allowances or min(allowances) <= 0:
            raise ValueError(f"allowances must be positive numbers, got {list(allowances)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.direction = direction
        self.reference = int(reference)
        self.max_reference = max(int(max_reference), self.reference)
        self.allowances = tuple(float(k) for k in allowances)
        self.seed = seed
        self._run_length = float(run_length)
        # the reference's first values: its shape, resampled to calibrate (a list while it is learnt; a rate's
        # as booleans once calibrated; none once nothing reads them: _hold_what_is_read_again)
        self._learning: list[float] | np.ndarray = []
        self._sums = np.zeros(3)  # count, sum and sum of squares of the whole reference (about _shift)
        self._shift = 0.0
        self._grow_at = 0  # the reference's count at which it is next calibrated (0: it no longer grows)
        self._calibration: Calibration | None = None
        self._thresholds = np.empty(0)
        self._on = np.zeros(0, dtype=bool)
        self._sides = self._allowances = np.empty(0)
        self._running = _Running(self._on, self._sides, self._allowances, self._thresholds)
        # a constant value's step for the charts (:meth:`_rest_on_constant`): for these thresholds, this value;
        # whether it moves a chart that is on up, and whether it moves every chart down
        self._resting: tuple[_Running, float, np.ndarray, bool, bool] | None = None
        self._stat = np.zeros(0)
        self._since_zero = np.zeros(0, dtype=np.int64)
        self._recent = _Recent(replay)
        self._evidence = Evidence(math.nan, math.nan, 0, 0, 0)
        self._drift = False
        self._relearning = False  # the reference is learnt after an alarm: searched for a change of its own
        # the reference before the last alarm, while the one after it is learnt (:meth:`resume`; not saved)
        self._before_alarm: tuple[Any, ...] | None = None
        self.n = 0

    # --- River's interface ----------------------------------------------------------------------------------

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def update(self, x: float) -> CUSUM:
        self._drift = bool(self.update_many([x]))
        return self

    def evidence(self) -> Evidence:
        return self._evidence

    @property
    def run_length(self) -> float:
        return self._run_length

    @run_length.setter
    def run_length(self, events: float) -> None:
        self._run_length = float(events)
        if self._calibration is not None:
            self._set_thresholds()

    @property
    def calibration(self) -> Calibration | None:
        """None while the reference is being learnt."""
        return self._calibration

    def update_many(self, values: Sequence[float] | np.ndarray) -> list[tuple[int, Evidence]]:
        fired: list[tuple[int, Evidence]] = []
        x = within_magnitude(np.asarray(values, dtype=float))
        start = 0
        while start < len(x):
            if self._calibration is None:
                take = x[start : start + self.reference - len(self._learning)]
                self._learning.extend(take.tolist())  # type: ignore[union-attr]  # a list while learnt
                self._recent.extend(take)
                self._absorb(take)
                start += len(take)
                if len(take) and self._relearning and self.search_reference:
                    found = self._split_learning(len(take))
                    if found is not None:
                        fired.append((start - len(take) + found[0], found[1]))
                        continue
                if len(self._learning) >= self.reference:
                    self._relearning = False
                    self._calibrate()
                continue
            growing = self._grow_at > self._sums[0]
            piece = x[start : start + (int(self._grow_at - self._sums[0]) if growing else len(x))]
            hit = self._run(piece)
            if hit is None:
                self._passed(piece, growing)
                start += len(piece)
                continue
            at, offset, chart, stat = hit
            self._recent.extend(x[start : start + at + 1])
            position = start + at
            fired.append((position, self._fire(offset, chart, stat)))
            start = position + 1
        self.n += len(x)
        return fired

    # --- the charts -----------------------------------------------------------------------------------------

    def _next_piece(self, n: int) -> int:
        """How many of the next ``n`` values :meth:`update_many` takes in one step: up to the end of the
        reference while it is learnt, else up to where the reference doubles (a run of the charts whole) when
        that comes first."""
        if self._calibration is None:
            return min(n, self.reference - len(self._learning))
        return min(n, int(self._grow_at - self._sums[0])) if self._grow_at > self._sums[0] else n

    def _passed(self, piece: np.ndarray, growing: bool, sums: tuple[float, float] | None = None) -> None:
        """What follows a run over ``piece`` without an alarm (the charts already advanced over it). ``sums``:
        the piece's sum and sum of squares about the reference's shift, when known (as :meth:`_absorb` makes
        them, to the bit)."""
        self._recent.extend(piece)
        if growing:
            if sums is None:
                self._absorb(self._held(piece))
            else:
                self._add_sums(len(piece), *sums)
            self._calibrate_when_doubled()

    def _split_learning(self, new: int) -> tuple[int, Evidence] | None:
        """A change within the reference learnt after an alarm (:func:`reference_split`), found once its ``new``
        last values came: which of them first showed it (the alarm's), and its evidence, the change placed by
        all the values at hand. None where the reference holds one level. The reference starts again after the
        alarm's value: the split first found may be placed early (its statistic just past the threshold, by the
        noise of the values before the change), and values of the old level left in the next reference were a
        change of their own there."""
        values = np.asarray(self._learning, dtype=float)
        sides = DIRECTIONS[self.direction]
        found = first_change(
            values, new, lambda some: reference_split(some, sides), lambda some: largest_split(some, sides)
        )
        if found is None:
            return None
        seen, first, split = found
        self._learn_from(values[seen:])
        self._evidence = Evidence(
            statistic=first.statistic,
            threshold=SPLIT_THRESHOLD,
            reference_size=split.at,
            window_size=seen - split.at,
            change_offset=seen - split.at - 1,
            reference_mean=split.before,
            window_mean=split.after,
            details={
                "reference_std": split.before_std,
                "direction": "up" if split.after > split.before else "down",
                "run_length": self._run_length,
                "found_in": "the reference learnt after an alarm",
            },
        )
        return seen - (len(values) - new) - 1, self._evidence

    def _hold_learning(self) -> Moments | None:
        """Hold a new numeric reference within its :data:`TAIL` quantiles, and take its sums again: its moments
        then (None when nothing was held: a rate, a constant, values already within them)."""
        values = np.asarray(self._learning, dtype=float)
        if len(values) != self._sums[0] or _zero_one(values):
            return None  # a rate's values are its events; a reference read before (a state saved before)
        low, high = np.quantile(values, (TAIL, 1 - TAIL))
        held = np.clip(values, low, high)
        if not low < high or (held == values).all():
            return None
        self._learn_from(held)
        return self._moments()

    def _held(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the charts see it: within the reference's range (module docstring, 5.)."""
        cal = self._calibration
        return np.clip(x, cal.low, cal.high) if cal is not None and cal.bounded else x

    def _learn_from(self, values: np.ndarray) -> None:
        """``values`` as the reference learnt so far, and its sums."""
        self._learning = values.tolist()
        self._sums[:] = 0.0
        self._absorb(values)

    def _learn_again_from(self, values: np.ndarray) -> None:
        """The charts off, and the reference learnt again from ``values`` on, searched for a change of its own
        (after an alarm, or :meth:`learn_again`)."""
        self._calibration = None
        self._learn_from(values)
        self._relearning = True

    def _calibrate_when_doubled(self) -> None:
        if self._sums[0] >= self._grow_at:
            self._calibrate()  # doubled: the same charts, sharper

    def _absorb(self, values: np.ndarray) -> None:
        """Add ``values`` to the reference's count and sums (about the first value, against cancellation)."""
        if not len(values):
            return
        if not self._sums[0]:
            self._shift = float(values[0])
        centred = values - self._shift
        self._add_sums(len(values), float(centred.sum()), float(np.square(centred).sum()))

    def _add_sums(self, count: int, total: float, squares: float) -> None:
        """Add the count, sum and sum of squares (about ``_shift``) of values to the reference's."""
        sums = self._sums  # added one by one: an array made of a tuple cost more than the sums
        sums[0] += count
        sums[1] += total
        sums[2] += squares

    def _moments(self) -> Moments:
        count, total, squares = self._sums
        mean = total / count
        variance = max(squares - count * mean * mean, 0.0) / max(count - 1, 1)
        return Moments(int(count), self._shift + mean, math.sqrt(variance))

    def _calibrate(self) -> None:
        """Calibrate on the reference so far (the first time, or once it has doubled: the charts keep their
        statistics)."""
        previous, moments = self._calibration, self._moments()
        first = previous is None
        if previous is None or previous.rate or not moments.std > 0:
            if previous is None:
                moments = self._hold_learning() or moments
            self._calibration = calibrate(self._learning, self.allowances, seed=self.seed, moments=moments)
        else:  # the same values to resample, so the same laws: at the location and scale of more values
            self._calibration = dataclasses.replace(
                previous, mean=moments.mean, std=resolved_std(moments), observed_mean=moments.mean, size=moments.count
            )
        self._grow_at = min(2 * self._calibration.size, self.max_reference)
        self._set_thresholds()
        if first:
            self._before_alarm = None  # a reference learnt after the alarm: it stands
            charts = len(self._calibration.sides)
            self._stat = np.zeros(charts)
            self._since_zero = np.zeros(charts, dtype=np.int64)
        self._hold_what_is_read_again()

    def _set_thresholds(self) -> None:
        cal = self._calibration
        assert cal is not None
        self._thresholds = cal.thresholds(self._run_length, DIRECTIONS[self.direction])
        self._on = np.isfinite(self._thresholds)  # charts that cannot meet the run length are off
        self._sides = np.asarray(cal.sides, dtype=float)
        self._allowances = np.asarray(cal.allowances)
        self._running = _Running(self._on, self._sides, self._allowances, self._thresholds)

    def _run(self, x: np.ndarray) -> tuple[int, int, int, float] | None:
        """Advance the charts over ``x``; at the first alarm: its position, the values since the change began,
        the chart, and its statistic (the charts are then left for :meth:`_fire` to restart).

        A chart's statistic over a run is its running sum less the running sum's lowest point so far (when
        below zero): ``S_t = C_t - min(0, min_{s<=t} C_s)``, the CUSUM recursion without a Python step a
        value. Its last zero (where the change began) is the last time ``C`` reached a new low."""
        cal = self._calibration
        assert cal is not None
        n = len(x)
        x = self._held(x)
        if x[0] == x[-1] and (x == x[0]).all() and self._rest_on_constant(x[0], n):
            return None
        on = self._running
        walk = np.cumsum((x - cal.mean) / cal.std)
        sums = np.multiply.outer(on.sides, walk)
        sums -= on.drifts(n)
        sums += self._stat[on.index, None]
        low = np.minimum.accumulate(sums, axis=1)
        np.minimum(low, 0.0, out=low)
        stat = np.subtract(sums, low, out=low)
        if (stat.max(axis=1) > on.thresholds).any():
            over = stat > on.thresholds[:, None]
            alarms = np.where(over.any(axis=1), over.argmax(axis=1), n)
            row = int(alarms.argmin())
            at = int(alarms[row])
            chart = int(on.index[row])
            head = sums[row, : at + 1]
            lowest = int(at - head[::-1].argmin())
            # no new low since the run began: the excursion began before it
            offset = at - lowest if head[lowest] <= 0.0 else int(self._since_zero[chart]) + at + 1
            return at, max(offset, 1), chart, float(stat[row, at])
        self._stat[on.index] = stat[:, -1]
        since_low = sums[:, ::-1].argmin(axis=1)  # values after each chart's last lowest point
        reached = sums[on.rows, n - 1 - since_low] <= 0.0
        self._since_zero[on.index] = np.where(reached, since_low, self._since_zero[on.index] + n)
        return None

    def _rest_on_constant(self, value: float, n: int) -> bool:
        """``n`` times the same value (a feature's null rate while it is never null): when it moves no chart
        up, each one's statistic falls by the same step ``n`` times (or stays at zero), with no alarm and
        without a pass over the values. False (nothing done) when it would move one up."""
        cal = self._calibration
        assert cal is not None
        resting = self._resting
        if resting is None or resting[0] is not self._running or resting[1] != value:  # thresholds or value new
            step = self._sides * ((value - cal.mean) / cal.std) - self._allowances
            resting = self._resting = (self._running, value, step, bool((step[self._on] > 0).any()), (step <= 0).all())
        step = resting[2]
        if resting[3]:
            return False
        # every chart at zero, and the value moves each one down: they stay there (a model's null rates, most of
        # its signals, then cost a few µs a batch instead of some 30)
        if resting[4] and not self._stat.any() and not self._since_zero.any():
            return True
        end = self._stat + n * step
        self._since_zero = np.where(end <= 0, 0, self._since_zero + n)
        self._stat = np.where(self._on, np.maximum(end, 0.0), 0.0)
        return True

    def _take_at_rest(self, piece: np.ndarray) -> bool:
        """:meth:`update_many` of a constant ``piece`` (within the reference's next doubling) that leaves every
        chart at rest, at zero, as the last constant piece did (:meth:`_rest_on_constant` found so): only what
        follows a run; False (nothing done) for any other."""
        resting = self._resting
        if (
            resting is None
            or resting[0] is not self._running
            or resting[1] != self._held(piece[:1])[0]
            or not resting[4]
            or np.count_nonzero(self._stat)  # quicker than .any() on a few values
            or np.count_nonzero(self._since_zero)
        ):
            return False
        # the value the sums are taken about adds none to them
        self._passed(piece, self._grow_at > self._sums[0], (0.0, 0.0) if resting[1] == self._shift else None)
        self.n += len(piece)
        return True

    def _fire(self, offset: int, chart: int, stat: float) -> Evidence:
        """Evidence of an alarm; the values since the change start the next reference."""
        cal = self._calibration
        assert cal is not None
        window = self._recent.last(offset).tolist()
        self._evidence = Evidence(
            statistic=stat,
            threshold=float(self._thresholds[chart]),
            reference_size=cal.size,
            window_size=len(window),
            change_offset=offset,
            reference_mean=cal.observed_mean,
            window_mean=float(np.mean(self._held(np.asarray(window)))),  # as the charts saw them
            details={
                "reference_std": cal.std,
                "allowance_k": cal.allowances[chart],
                "direction": "up" if cal.sides[chart] > 0 else "down",
                "run_length": self._run_length,
            },
        )
        self._before_alarm = (cal, self._learning, self._sums.copy(), self._shift, self._grow_at)
        self._learn_again_from(np.asarray(window[-self.reference :], dtype=float))
        return self._evidence

    # --- state ----------------------------------------------------------------------------------------------

    def learn_again(self) -> None:
        """Learn the reference again from the next value, the charts off meanwhile, as after an alarm of their own
        (and searched for a change of its own as that one is): the values moved, by a change another signal of
        them reported (a feature's values after its spread's alert). Nothing while a reference is learnt."""
        if self._calibration is not None:
            self._learn_again_from(np.empty(0))

    def resume(self) -> bool:
        """Chart on against the reference before the last alarm, from zero, as if it had not been, while the one
        after it is still learnt; whether there was one to take back. For values made to stand as they did on it
        again (a correlation score once the pair that moved is set aside, ``streams.drift.monitor``): the
        reference learnt after the alarm would have taken in a change in the next ``reference`` values (another
        pair's correlation, 400 events after the first's)."""
        if self._before_alarm is None or self._calibration is not None:
            return False
        self._calibration, self._learning, self._sums, self._shift, self._grow_at = self._before_alarm
        self._before_alarm, self._relearning = None, False
        self._set_thresholds()
        self._stat = np.zeros(len(self._thresholds))
        self._since_zero = np.zeros(len(self._thresholds), dtype=np.int64)
        return True

    def restart_charts(self) -> None:
        """The charts start again from zero, their reference and thresholds kept: the evidence they gathered is
        of values that no longer mean what they did (a model's correlation and mean-shift scores once a feature
        that moved is set aside, ``streams.drift.multivariate``)."""
        self._stat = np.zeros_like(self._stat)
        self._since_zero = np.zeros_like(self._since_zero)

    def set_run_length(self, events: float) -> None:
        self.run_length = events

    def alert_level(self, budget: float) -> dict[str, float]:
        return {}  # its level is its run length, in the alert's detail

    def snapshot(self) -> dict[str, Any]:
        """The state, with the values it holds that it may read again: a restored detector alarms at the same
        values with the same evidence (see :meth:`_reads_learning_again` and :meth:`_recent_read_again`)."""
        return {
            "n": self.n,
            "run_length": self._run_length,
            "learning": pack_floats(np.asarray(self._learning, dtype=float)),
            "sums": [self._shift, *self._sums.tolist()],
            "grow_at": self._grow_at,
            "calibration": self._calibration.as_dict() if self._calibration is not None else None,
            "stat": self._stat.tolist(),
            "since_zero": self._since_zero.tolist(),
            "recent": pack_floats(self._recent.last(self._recent_read_again())),
            "relearning": self._relearning,
        }

    def _reads_learning_again(self) -> bool:
        """Whether a later update can read the reference's first values: they are read to calibrate, while the
        reference is learnt and at each doubling of a rate or of a constant (a numeric reference is rescaled
        without them)."""
        cal = self._calibration
        if cal is None:
            return True
        growing = self._grow_at > self._sums[0]
        return bool(growing and (cal.rate or not self._moments().std > 0))

    def _hold_what_is_read_again(self) -> None:
        """Let go of the reference's first values once no update can read them, and hold a rate's as booleans
        (a byte a value, not a Python float's 32 bytes): a model of 35 signals held some 2 MB of them."""
        if not self._reads_learning_again():
            self._learning = []
        elif self._calibration is not None and self._calibration.rate:  # its values are 0 and 1 (calibrate)
            self._learning = np.asarray(self._learning, dtype=bool)

    def _recent_read_again(self) -> int:
        """How many of the last values seen a later update can read. An alarm reads the values since its chart
        last left zero (:meth:`_run`, ``offset``), and every chart counts them (``since_zero``): older values
        are never read again, nor, while the reference is learnt, any (the charts start at rest). In a
        stationary stream the charts return to zero every few dozen values: a model's saved state shrank from
        some 1.4 MB (2,000 + 2,000 values a signal) to a few dozen kB, written at every offset commit."""
        if self._calibration is None:
            return 0
        return min(self._recent.size, int(self._since_zero.max(initial=0)))

    def restore(self, state: dict[str, Any]) -> None:
        self.n = int(state.get("n", 0))
        self._learning = unpack_floats(state.get("learning", [])).tolist()
        sums = state.get("sums")
        if sums:
            self._shift, self._sums = float(sums[0]), np.asarray(sums[1:], dtype=float)
        else:
            self._sums[:] = 0.0
            self._absorb(np.asarray(self._learning))
        self._recent = _Recent(self._recent.capacity)
        self._recent.extend(unpack_floats(state.get("recent", [])))
        self._grow_at = int(state.get("grow_at", 0))
        saved = state.get("calibration")
        self._calibration = Calibration.from_dict(saved) if saved else None
        if self._calibration is not None:
            self._set_thresholds()
            self._stat = np.asarray(state.get("stat", []), dtype=float)
            self._since_zero = np.asarray(state.get("since_zero", []), dtype=np.int64)
            if len(self._stat) != len(self._thresholds):  # saved with other allowances: start the charts at rest
                self._stat = np.zeros(len(self._thresholds))
                self._since_zero = np.zeros(len(self._thresholds), dtype=np.int64)
        self._hold_what_is_read_again()
        self._relearning = bool(state.get("relearning", False)) and self._calibration is None
        self._drift = False


def update_together(detectors: Sequence[CUSUM], values: Sequence[np.ndarray]) -> list[list[tuple[int, Evidence]]]:
    """``detector.update_many(row)`` for each of ``detectors`` and its row of ``values`` (float arrays): the same
    alarms, statistics and state to the bit, with the charts of the detectors whose rows have one length run
    in one pass instead of a run each (a model's numeric signals take a batch's values at once, and a run
    costs some 20 µs before its first value).

    Each row is taken in the pieces :meth:`CUSUM.update_many` takes it in: the values that complete the
    reference (kept, then calibrated on), then runs of the charts up to each doubling of the reference. A
    model's signals learn and double their references at the same events, so they stay together through
    their warm-up too. A constant piece, a piece on which a chart alarms, a reference complete but not yet
    calibrated on (an alarm on a row's last value started it) and a detector given more than one row: the
    rest of its row goes through :meth:`CUSUM.update_many` on its own, in order; nothing is changed in a
    detector before it is known which way it goes."""
    if len(detectors) != len(values):
        raise ValueError(f"{len(detectors)} detectors for {len(values)} rows of values")
    given = Counter(map(id, detectors))
    taken = [0] * len(detectors)  # how much of each row has been taken
    early: list[list[tuple[int, Evidence]]] = [[] for _ in detectors]  # alarms while a reference was learnt
    alone = {i for i, detector in enumerate(detectors) if given[id(detector)] > 1}
    going = [i for i in range(len(detectors)) if i not in alone and len(values[i])]
    while going:
        banks: dict[tuple[int, bytes, bytes], list[int]] = defaultdict(list)  # pieces of one length, alike charts
        for i in going:
            detector = detectors[i]
            n = detector._next_piece(len(values[i]) - taken[i])
            if detector.calibration is not None:
                banks[n, detector._sides.tobytes(), detector._allowances.tobytes()].append(i)
            elif n:  # the reference's values: kept, and calibrated on once complete
                learnt = detector.update_many(values[i][taken[i] : taken[i] + n])
                early[i] += [(taken[i] + at, evidence) for at, evidence in learnt]  # a change within it
                taken[i] += n
            else:  # complete already: update_many calibrates on it first
                alone.add(i)
        for (n, _, _), bank in banks.items():
            x = within_magnitude(np.stack([values[i][taken[i] : taken[i] + n] for i in bank]), copied=True)
            constant = (x == x[:, :1]).all(axis=1)
            for r in np.flatnonzero(constant).tolist():  # a null rate while the feature is never null, mostly
                if detectors[bank[r]]._take_at_rest(x[r]):
                    taken[bank[r]] += n
                else:
                    alone.add(bank[r])
            moving = np.flatnonzero(~constant)
            size = max(_BANK_BYTES // (8 * detectors[bank[0]]._sides.size * (n + 1)), 1)
            for start in range(0, len(moving), size):
                rows = moving[start : start + size]
                alarmed = _run_bank([detectors[bank[r]] for r in rows], x[rows])
                for r, hit in zip(rows.tolist(), alarmed.tolist(), strict=True):
                    if hit:
                        alone.add(bank[r])
                    else:
                        taken[bank[r]] += n
        going = [i for i in going if i not in alone and taken[i] < len(values[i])]
    fired = early
    for i in sorted(alone):
        start = taken[i]
        fired[i] += [(start + at, evidence) for at, evidence in detectors[i].update_many(values[i][start:])]
    return fired


def _run_bank(bank: list[CUSUM], x: np.ndarray) -> np.ndarray:
    """:meth:`CUSUM._run` for every detector of ``bank`` over its row of ``x`` (bank × values), with the same
    operations on the same values. The detectors whose charts do not alarm are advanced (``_passed``, given
    their rows' sums); the others are left as they were, for :meth:`CUSUM.update_many` to run. Returns which
    alarm."""
    (m, n), first = x.shape, bank[0]
    calibrations = [d._calibration for d in bank]
    mean = np.array([c.mean for c in calibrations])  # type: ignore[union-attr]
    std = np.array([c.std for c in calibrations])  # type: ignore[union-attr]
    thresholds = np.array([d._thresholds for d in bank])  # inf: a chart that is off never alarms
    before = np.array([d._stat for d in bank])
    held = x  # each row within its reference's range, as CUSUM._held holds it
    if any(c.bounded for c in calibrations):  # type: ignore[union-attr]
        low = np.array([c.low for c in calibrations])  # type: ignore[union-attr]
        high = np.array([c.high for c in calibrations])  # type: ignore[union-attr]
        held = np.clip(x, low[:, None], high[:, None])
    walk = np.cumsum((held - mean[:, None]) / std[:, None], axis=1)
    sums = np.empty((m, len(first._sides), n + 1))  # each chart's running sums after a 0: lows count 0
    sums[:, :, 0] = 0.0
    body = sums[:, :, 1:]
    np.multiply(first._sides[None, :, None], walk[:, None, :], out=body)
    body -= first._allowances[:, None] * _counts(n)  # the bank's charts are alike
    body += before[:, :, None]
    low = np.minimum.accumulate(sums, axis=2)
    stat = np.subtract(body, low[:, :, 1:], out=low[:, :, 1:])
    alarmed = (stat.max(axis=2) > thresholds).any(axis=1)
    since_low = body[:, :, ::-1].argmin(axis=2)  # values after each chart's last lowest point
    reached = np.take_along_axis(body, (n - 1 - since_low)[:, :, None], axis=2)[:, :, 0] <= 0.0
    on = np.array([d._on for d in bank])  # the charts that are off keep their statistics
    stats = np.where(on, stat[:, :, -1], before)
    since = np.array([d._since_zero for d in bank])
    sinces = np.where(on, np.where(reached, since_low, since + n), since)
    growing = [d._grow_at > d._sums[0] for d in bank]
    if any(growing):  # each row's sums, as CUSUM._absorb adds them (the same to the bit)
        centred = held - np.array([d._shift for d in bank])[:, None]
        totals, squares = centred.sum(axis=1).tolist(), np.square(centred).sum(axis=1).tolist()
    for b, (detector, fired) in enumerate(zip(bank, alarmed.tolist(), strict=True)):
        if fired:
            continue
        detector._stat, detector._since_zero = stats[b], sinces[b]  # rows of the bank's: no copy a detector
        detector._passed(x[b], growing[b], (totals[b], squares[b]) if growing[b] else None)
        detector.n += n
    return alarmed
