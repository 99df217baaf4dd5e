"""The report's plots draw the producers' texts as written."""

from __future__ import annotations

import pandas as pd

from driftloop.analytics.plots import feature_shift_plot, pair_shift_plot

PNG = b"\x89PNG\r\n\x1a\n"


def test_texts_with_dollars_are_drawn_as_written_not_read_as_tex() -> None:
    """A feature named ``cost_$x^$`` and categories such as ``$0-$100`` (price buckets): matplotlib read text
    between two ``$`` as TeX, drew ``$0-$100`` in italics, and raised a ValueError on ``$x^$``, which stopped
    the whole report."""
    before = pd.Series(["$0-$100", "$100-$500", "$x_{$"] * 50)
    after = pd.Series(["$0-$100", "$x_{$", "$x_{$"] * 50)
    assert feature_shift_plot("cost_$x^$", before, after, "categorical").startswith(PNG)
    numbers = pd.Series(range(100), dtype=float)
    assert feature_shift_plot("$\\undefined$", numbers, numbers + 5, "numeric").startswith(PNG)


def test_a_pair_of_features_is_drawn_against_each_other_whatever_their_names() -> None:
    numbers = pd.Series(range(100), dtype=float)
    before = pd.DataFrame({"$a$": numbers, "b_$^": numbers * 2})
    after = pd.DataFrame({"$a$": numbers, "b_$^": -numbers})
    assert pair_shift_plot(("$a$", "b_$^"), before, after).startswith(PNG)
    assert pair_shift_plot(("$a$", "b_$^"), before.head(2), after).startswith(PNG)  # too few for a correlation
