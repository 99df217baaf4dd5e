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


def test_a_number_and_a_category_are_drawn_as_the_number_s_mean_in_each_category() -> None:
    """A pair of a numeric and a categorical feature (a correlation alert on a category's indicator): the
    number's mean in each main category before and after; whatever the names, with a category missing from a
    half, and with one row a half."""
    before = pd.DataFrame({"$amt$": [1.0, -1.0, 0.0] * 40, "ch_$^": pd.Series(["$web", "app", "store"] * 40)})
    after = pd.DataFrame({"$amt$": [-1.0, 1.0] * 60, "ch_$^": pd.Series(["$web", "app"] * 60)})
    assert pair_shift_plot(("$amt$", "ch_$^"), before, after).startswith(PNG)
    assert pair_shift_plot(("ch_$^", "$amt$"), before.head(1), after.head(1)).startswith(PNG)


def test_two_categories_are_drawn_as_the_shares_of_one_within_the_other() -> None:
    before = pd.DataFrame({"ch": pd.Series(["web", "app"] * 50), "$dev$": pd.Series(["desk", "$mob"] * 50)})
    after = pd.DataFrame({"ch": pd.Series(["web", "app"] * 50), "$dev$": pd.Series(["$mob", "desk"] * 50)})
    assert pair_shift_plot(("ch", "$dev$"), before, after).startswith(PNG)
    assert pair_shift_plot(("ch", "$dev$"), before.head(1), after.tail(1)).startswith(PNG)
