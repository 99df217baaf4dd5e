"""The names of a model's signals: which feature a signal watches, which version of an output, and which
names are the model's own (``joint``, ``score@v3``). Plain text work, read by the alert gate in the worker's
main process as by the monitor (:mod:`.signals`, which holds the signals themselves, loads the detectors).
"""

from __future__ import annotations

import functools

#: A model's outputs (prediction, score, error) are watched per serving version, as ``score@v3``: a new
#: version starts its own reference, so a deployment is not a drift. Features are watched across versions.
VERSION_MARK = "@v"
OUTPUTS = frozenset({"score", "prediction", "error"})
#: A numeric output's shape (``score:shape@v3``, ``prediction:shape@v3``: a regression's predictions that crowd
#: near their mean keep it): a prediction drift, watched per version as its output is.
SHAPE = ":shape"
OUTPUT_SHAPES = frozenset({f"score{SHAPE}", f"prediction{SHAPE}"})
JOINT = "joint"  # the signal of how the numeric features move together
CORRELATION = "correlation"  # the signal of how pairs of features (numbers, main categories) vary together
MEAN_SHIFT = "mean_shift"  # the signal of the same columns' means moving together
#: The model's own signals of many features, whose values are statistics of running estimates (one event's
#: leans on those before it), not each event's own.
RUNNING = frozenset({JOINT, CORRELATION, MEAN_SHIFT})
NULL_RATE = ":null_rate"
#: The signals of a feature besides its values: ``amount:spread``, ``amount:null_rate``, ``amount:outliers``,
#: ``amount:shape``.
FEATURE_SIGNALS = (":spread", NULL_RATE, ":outliers", SHAPE)
#: A feature named as one of the model's own signals could be (``joint``, ``correlation``, ``mean_shift``,
#: ``amount:spread``, ``score@v3``) is watched as ``feature:<name>``: its values and that signal's never share a
#: detector (a feature ``joint`` fed the joint signal's chart, an alarm every few thousand stationary events).
#: Its other signals keep its name (``joint:spread``).
FEATURE_MARK = "feature:"


@functools.lru_cache(maxsize=1 << 16)  # a batch asks for each of its features: a model's few, again and again
def feature_signal(feature: str) -> str:
    """The signal that watches a feature's values: the feature's name, unless a signal of the model's own could
    have it.

    >>> feature_signal("amount"), feature_signal("joint"), feature_signal("mean_shift"), feature_signal("score@v3")
    ('amount', 'feature:joint', 'feature:mean_shift', 'feature:score@v3')
    >>> feature_signal("amount:spread")
    'feature:amount:spread'
    """
    return FEATURE_MARK + feature if _taken(feature) else feature


def _taken(name: str) -> bool:
    """Whether a signal of a model's own could be named ``name``."""
    return (
        name in (JOINT, CORRELATION, MEAN_SHIFT) or name.endswith(FEATURE_SIGNALS) or output_version(name) is not None
    )


def feature_of(signal: str) -> str:
    """The feature a signal of it watches (the signal itself for any other).

    >>> feature_of("amount:outliers"), feature_of("amount"), feature_of("joint"), feature_of("feature:a:spread")
    ('amount', 'amount', 'joint', 'a:spread')
    """
    if signal.startswith(FEATURE_MARK) and _taken(named := signal.removeprefix(FEATURE_MARK)):
        return named
    for suffix in FEATURE_SIGNALS:
        if signal.endswith(suffix):
            return signal.removesuffix(suffix)
    return signal


def alert_feature(kind: str, signal: str) -> str:
    """What an alert of ``kind`` on ``signal`` (its name in alerts) is about, for the alert policy: the feature
    whose values it watches, or its null rate (a pipeline that stops filling a feature is another drift than
    the one that moved its values), or "" for the model's own signals (its outputs, ``joint``, ``correlation``,
    ``mean_shift``), which watch all of its features, or none.

    >>> alert_feature("data", "amount:shape"), alert_feature("data", "feature:joint"), alert_feature("data", "joint")
    ('amount', 'joint', '')
    >>> alert_feature("data", "amount:null_rate"), alert_feature("prediction", "score")
    ('amount:null_rate', '')
    """
    if kind != "data" or signal in (JOINT, CORRELATION, MEAN_SHIFT):
        return ""
    return signal if signal.endswith(NULL_RATE) else feature_of(signal)


def output_version(name: str) -> int | None:
    """The version of an output signal's name (``score@v3`` → 3), None for any other signal.

    >>> output_version("score@v3"), output_version("error@v0"), output_version("amount@v3"), output_version("score")
    (3, 0, None, None)
    """
    base, mark, version = name.partition(VERSION_MARK)
    return int(version) if mark and (base in OUTPUTS or base in OUTPUT_SHAPES) and version.isdigit() else None
