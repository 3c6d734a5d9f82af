"""Subgroups for `meddx evaluate --by COLUMN`: numeric columns of many values in quartile bands, and patients whose
rows disagree on the column counted and named in the text."""

from __future__ import annotations

import numpy as np

from meddx.config import EvaluateConfig
from meddx.evaluation.subgroups import MISSING, subgroup_scores, subgroup_text, subgroups_of


def test_a_numeric_column_of_many_values_falls_into_ordered_quartile_bands():
    """`--by age` made one subgroup per year (60 groups of a few samples, every one 'too few'); now quartile bands
    named by their range, in numeric order, with missing values kept apart."""
    ages = [*range(20, 100), None, ""]
    groups, order, banded = subgroups_of(ages)
    assert banded and order == ["20-39", "40-59", "60-79", "80-99", MISSING]
    assert groups[0] == "20-39" and groups[79] == "80-99" and list(groups[-2:]) == [MISSING, MISSING]
    few = subgroups_of(["M", "F", None, "M"])
    assert not few[2] and list(few[0]) == ["M", "F", MISSING, "M"] and few[1] == [MISSING, "F", "M"]
    assert not subgroups_of([1, 2, 3, 1, 2])[2]  # a few numeric values (grade 1-3) stay values


def test_patients_whose_rows_disagree_on_the_column_are_counted_and_named():
    """A patient with rows in two subgroups (sex typed differently on two visits) made the groups dependent without
    a word; now the count is in the figures and the text."""
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random((n, 1)) < 0.4).astype(float)
    p = np.clip(y * 0.3 + rng.random((n, 1)) * 0.7, 0, 1)
    patients = np.array([f"p{i // 2}" for i in range(n)])
    sex = np.array(["F" if i % 4 < 2 else "M" for i in range(n)], dtype=object)
    sex[1] = "M"  # patient p0's second row disagrees
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, sex, "sex", EvaluateConfig(bootstrap=50))
    assert out["patients_in_several_groups"] == 1 and set(out["groups"]) == {"F", "M"} and not out["banded"]
    assert "1 patient(s) have rows in more than one subgroup of sex" in subgroup_text(out)
    ages = rng.integers(20, 90, n // 2).repeat(2)
    clean = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, ages, "age", EvaluateConfig(bootstrap=50))
    assert clean["patients_in_several_groups"] == 0 and clean["banded"] and len(clean["groups"]) == 4
    assert "cut into quartile bands" in subgroup_text(clean) and "more than one subgroup" not in subgroup_text(clean)
