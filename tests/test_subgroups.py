"""Subgroups for `meddx evaluate --by COLUMN[:BANDS]`: numeric columns in quantile bands when asked, a hint when a
numeric column of many values is read value by value, and patients whose rows disagree on the column named."""

from __future__ import annotations

import numpy as np
import pytest

from meddx.config import EvaluateConfig
from meddx.errors import ConfigError, DataError
from meddx.evaluation.subgroups import MISSING, subgroup_column, subgroup_scores, subgroup_text, subgroups_of


def test_age_in_bands_when_asked_and_number_coded_sites_never_merged():
    """`--by age` made one subgroup per year (60 groups, every one 'too few'); `--by age:4` now gives quartile bands
    named by their range, in numeric order, with text values ('90+') and missing values kept apart. Sites coded
    1-12 stay 12 sites (in numeric order) unless bands are asked for."""
    groups, order, how = subgroups_of([*range(20, 100), None, "", "90+"], 4)
    assert order == ["20 to 40", "41 to 60", "61 to 80", "81 to 99", MISSING] and how["bands"] == 4
    assert groups[0] == "20 to 40" and list(groups[-3:]) == [MISSING, MISSING, "81 to 99"]  # 90+ in the top band
    dicom = subgroups_of(["045Y", "006M", "070Y", "020D"] * 10, 2)[1]  # DICOM ages in years
    assert dicom == ["0.0548 to 0.5", "45 to 70"]
    sites = subgroups_of(list(range(1, 13)) * 30)
    assert sites[1] == [str(i) for i in range(1, 13)] and sites[2]["bands"] == 0
    dates = subgroups_of(list(range(20190101, 20190131)), 4)[1]  # 6 significant figures named all four alike
    assert dates[0] == "20190101 to 20190108" and len(set(dates)) == 4
    assert subgroups_of(list(range(-20, 20)), 4)[1][0] == "-20 to -11"
    assert subgroups_of(["M", "F", None, "M"])[1] == ["F", "M", MISSING]


def test_ties_that_leave_one_band_fall_back_to_values_and_say_so():
    values = [60] * 160 + [70] * 40 + list(range(61, 70))
    groups, order, how = subgroups_of(values, 4)
    assert how["bands"] == 0 and "60" in order and "70" in order
    sub = {"column": "age", "min_samples": 20, "groups": {}, **how}
    assert "leave fewer than 2 bands, so one subgroup per value" in subgroup_text(sub)
    hint = {"column": "age", "min_samples": 20, "groups": {}, **subgroups_of(list(range(20, 80)))[2]}
    assert "--by age:4 cuts it into 4 bands" in subgroup_text(hint)


def test_by_column_and_bands_are_parsed_and_checked(tmp_path):
    (tmp_path / "m.csv").write_text("path,age\na.png,40\nb.png,50\n")
    assert subgroup_column(str(tmp_path / "m.csv"), "age:4", None) == {
        "column": "age", "values": {"a.png": "40", "b.png": "50"}, "bands": 4}  # fmt: skip
    assert subgroup_column(str(tmp_path / "m.csv"), "age", None)["bands"] == 0
    assert subgroup_column(str(tmp_path / "m.csv"), "AGE:2", None)["values"] == {"a.png": "40", "b.png": "50"}
    for bad in ("age:1", "age:0", "age:x"):
        with pytest.raises(ConfigError, match="the bands after ':' must be a whole number, 2 or more"):
            subgroup_column(str(tmp_path / "m.csv"), bad, None)


def test_patients_whose_rows_disagree_on_the_column_are_counted_and_named():
    """A patient with rows in two subgroups (sex typed differently on two visits) made the groups dependent without
    a word; now the count is in the figures and the text. Banded ages may cross a band between visits: not counted."""
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random((n, 1)) < 0.4).astype(float)
    p = np.clip(y * 0.3 + rng.random((n, 1)) * 0.7, 0, 1)
    patients = np.array([f"p{i // 2}" for i in range(n)])
    sex = np.array(["F" if i % 4 < 2 else "M" for i in range(n)], dtype=object)
    sex[1] = "M"  # patient p0's second row disagrees
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, sex, "sex", EvaluateConfig(bootstrap=50))
    assert out["patients_in_several_groups"] == 1 and set(out["groups"]) == {"F", "M"} and not out["bands"]
    assert "1 patient(s) have rows in more than one subgroup of sex" in subgroup_text(out)
    ages = rng.integers(20, 90, n)
    cfg = EvaluateConfig(bootstrap=50)
    banded = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, ages, "age", cfg, bands=4)
    assert "patients_in_several_groups" not in banded and banded["bands"] == 4 and len(banded["groups"]) == 4
    assert "age cut into 4 bands" in subgroup_text(banded) and "more than one subgroup" not in subgroup_text(banded)


def test_spellings_of_one_value_are_one_group_and_unlisted_samples_a_group_apart():
    """`F` and `f` were two subgroups (the largest gap was between M and f), site `1` and `01` two sites; samples
    whose rows the manifest no longer holds went silently into (missing). Now one group per value, named as most
    rows write it, and a group apart for unlisted samples; the text says both."""
    from meddx.evaluation.subgroups import NOT_LISTED

    groups, order, how = subgroups_of(["F", "f", "F", "M", "m", "m", None, NOT_LISTED])
    assert order == ["F", "m", NOT_LISTED, MISSING] and how["merged_spellings"] == 2 and how["not_listed"] == 1
    assert list(subgroups_of(["1", "01", "2"])[0]) == ["1", "1", "2"]
    sub = {"column": "sex", "min_samples": 20, "groups": {}, **how}
    assert "written differently" in subgroup_text(sub) and "1 sample(s) are no longer in the manifest" in (
        subgroup_text(sub)
    )
    none = subgroups_of(["F", "M"] * 10, 4)[2]
    assert "sex holds no numbers to cut into bands" in subgroup_text({"column": "sex", "min_samples": 20, **none})


def test_subgroups_on_the_terminal():
    from meddx.evaluation.summary import subgroup_lines

    sub = {"column": "sex", "min_samples": 20, "bands": 0, "groups": {
        "F": {"samples": 40, "figures": {"roc_auc": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}}},
        "M": {"samples": 5}}}  # fmt: skip
    lines = subgroup_lines(sub).splitlines()
    assert lines[0] == "subgroups by sex:" and lines[1] == "  F: 40 samples, ROC AUC 0.900 (0.800-0.950)"
    assert lines[2] == "  M: 5 samples, not scored (too small)" and lines[3].startswith("Fewer than two subgroups")


def test_a_column_of_one_value_per_sample_is_said_to_group_nothing():
    """`--by image` made 300 one-row subgroups with no word."""
    sub = {"column": "image", "min_samples": 20, "groups": {f"x{i}.png": {"samples": 1} for i in range(300)}}
    assert "image holds nearly one value per sample (300 for 300): no groups to compare" in subgroup_text(sub)
    sex = {"column": "sex", "min_samples": 20, "groups": {"F": {"samples": 150}, "M": {"samples": 150}}}
    assert "one value per sample" not in subgroup_text(sex)


def test_ages_outside_0_to_125_years_are_counted_and_named():
    """Ages of -5 or 250 were banded with the others without a word; an age column's values outside 0-125 years are
    now counted and the text asks to check them. A column not named like an age (stage) is never checked."""
    rng = np.random.default_rng(1)
    n = 120
    y = (rng.random((n, 1)) < 0.5).astype(float)
    p = rng.random((n, 1))
    ages = np.array([str(a) for a in rng.integers(20, 90, n)], dtype=object)
    ages[:3] = ["-5", "250", "045Y"]  # two typing errors; a DICOM age is 45 years
    cfg, patients = EvaluateConfig(bootstrap=0), [f"p{i}" for i in range(n)]
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, ages, "Patient Age", cfg, bands=3)
    assert out["implausible_ages"] == 2
    assert "2 value(s) of Patient Age lie outside 0-125 years" in subgroup_text(out)
    stage = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, ages, "stage", cfg, bands=3)
    assert "implausible_ages" not in stage and "outside 0-125" not in subgroup_text(stage)


def test_a_multilabel_subgroup_gap_of_one_label_is_not_hidden_by_the_macro_figure():
    """`--by Sex` on a 3-label run showed only the macro gap (0.022) while one label's was 0.095: each label's ROC AUC
    per subgroup is now kept, tabled and its largest gap named; the macro figure says it is macro."""
    from meddx.evaluation.sections import _subgroup_section
    from meddx.evaluation.summary import subgroup_lines

    rng = np.random.default_rng(2)
    n = 400
    sex = np.array(["F", "M"] * (n // 2), dtype=object)
    y = (rng.random((n, 2)) < 0.4).astype(float)
    noise = np.where(sex == "F", 0.3, 3.0)  # label b is read well for F only; label a alike for both
    p = 1 / (1 + np.exp(-np.stack([2 * (y[:, 0] - 0.5) + rng.normal(size=n),
                                   2 * (y[:, 1] - 0.5) + noise * rng.normal(size=n)], 1)))  # fmt: skip
    out = subgroup_scores(y, p, p > 0.5, "multilabel", ["a", "b"], [f"p{i}" for i in range(n)], sex, "Sex",
                          EvaluateConfig(bootstrap=100))  # fmt: skip
    one = out["largest_label_gap"]
    assert one["label"] == "b" and one["high"] == "F" and one["gap"] > out["largest_gap"]["gap"]
    text = subgroup_text(out)
    assert "Largest gap in macro ROC AUC" in text and "(the largest of 2 labels' gaps): b, F " in text
    assert "a real gap" not in text.split("Largest gap of one label")[1]  # the largest of several is no verdict
    table = _subgroup_section({"subgroups": out})
    assert table["header"][3] == "macro ROC AUC" and table["header"][-2:] == ["ROC AUC a", "ROC AUC b"]
    assert "macro ROC AUC" in subgroup_lines(out)
    single = subgroup_scores(y[:, :1], p[:, :1], p[:, :1] > 0.5, "binary", ["a"], [f"p{i}" for i in range(n)], sex,
                             "Sex", EvaluateConfig(bootstrap=0))  # fmt: skip
    assert "largest_label_gap" not in single and "macro" not in subgroup_text(single)


def test_a_subgroup_of_one_patient_is_not_scored_nor_called_a_real_gap():
    """A band holding 35 images of one patient got 'ROC AUC 0.879 (0.879-0.879)' (a patient bootstrap of one patient
    draws it every time) and 'a real gap'; a subgroup of fewer than 5 patients is now counted, not scored."""
    rng = np.random.default_rng(3)
    n = 200
    y = (rng.random((n, 1)) < 0.5).astype(float)
    p = np.clip(0.3 * y + 0.7 * rng.random((n, 1)), 0, 1)
    patients = np.array(["solo"] * 40 + [f"p{i}" for i in range(n - 40)])
    band = np.array(["late"] * 40 + ["early"] * (n - 40), dtype=object)
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], patients, band, "visit", EvaluateConfig(bootstrap=50))
    assert out["groups"]["late"]["patients"] == 1 and "figures" not in out["groups"]["late"]
    assert "largest_gap" not in out and "5 patients" in subgroup_text(out)


def test_a_subgroup_of_one_class_keeps_its_sensitivity_and_says_why_it_has_no_auc():
    """`--by subtype` on Kermany: 'bacteria: 1061 samples, too few to score'; the group was large, but every case in
    it is positive, so its ROC AUC is undefined while its sensitivity is not. Now it says so and shows it."""
    from meddx.evaluation.summary import subgroup_lines

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60), np.zeros(60), rng.integers(0, 2, 60)][:, None].astype(float)
    p = np.clip(0.4 * y + 0.6 * rng.random((180, 1)), 0, 1)
    kind = np.array(["bacteria"] * 60 + ["normal"] * 60 + ["mixed"] * 60, dtype=object)
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], np.arange(180).astype(str), kind, "subtype",
                          EvaluateConfig(bootstrap=50))  # fmt: skip
    bacteria = out["groups"]["bacteria"]
    assert bacteria["one_class"] and bacteria["figures"]["roc_auc"]["value"] is None
    assert bacteria["figures"]["sensitivity"]["value"] > 0.5 and bacteria["figures"]["specificity"]["value"] is None
    line = next(line for line in subgroup_lines(out).splitlines() if "bacteria" in line)
    assert line.startswith("  bacteria: 60 samples, one class only, ROC AUC undefined; sensitivity 0.")
    assert "largest_gap" not in out  # one group with an AUC: undefined ones are not ranked against it


def test_a_subgroup_whose_labels_are_all_unknown_is_unscored_not_one_class():
    """New data lacking a label's column for one site: that site's group was called 'one class only'."""
    from meddx.evaluation.summary import subgroup_lines

    rng = np.random.default_rng(1)
    y = np.r_[rng.integers(0, 2, 60), np.full(60, np.nan)][:, None].astype(float)
    p = rng.random((120, 1))
    site = np.array(["a"] * 60 + ["b"] * 60, dtype=object)
    out = subgroup_scores(y, p, p > 0.5, "binary", ["x"], np.arange(120).astype(str), site, "site",
                          EvaluateConfig(bootstrap=20))  # fmt: skip
    assert out["groups"]["b"]["unscored"] == "every label unknown" and "one_class" not in out["groups"]["b"]
    assert "b: 60 samples, not scored (every label unknown)" in subgroup_lines(out)


def test_subgroups_of_new_data_without_the_runs_image_column_name_the_option(tmp_path):
    """A run trained from `path,label` evaluated `--by sex` on new data holding `file,label,sex` stopped on the run's
    image column `path` without the option that names this data's (the reader's own stop names it)."""
    rows = "".join(f"x{i}.png,{i % 2},{'MF'[i % 2]}\n" for i in range(4))
    (tmp_path / "new.csv").write_text("file,label,sex\n" + rows)
    with pytest.raises(DataError, match=r"no image column 'path'; .* \(--image-column names this data's\)"):
        subgroup_column(str(tmp_path / "new.csv"), "sex", "path", runs_column=True)
    groups = subgroup_column(str(tmp_path / "new.csv"), "sex", "file", runs_column=False)
    assert groups["values"] == {f"x{i}.png": "MF"[i % 2] for i in range(4)}
