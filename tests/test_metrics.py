"""Every metric equals scikit-learn's on the same arrays (1e-9); bootstrap, operating points, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from meddx.config import EvaluateConfig
from meddx.errors import ConfigError
from meddx.evaluation import metrics as M
from meddx.evaluation.calibration import apply_temperature, fit_temperature, reliability
from meddx.evaluation.evaluation import bootstrap_weights, evaluate_arrays
from meddx.evaluation.operating import choose_threshold, parse_operating_point, rates

TOL = 1e-9


@pytest.fixture()
def arrays():
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    p[:40] = np.round(p[:40], 1)  # ties
    w = rng.integers(0, 4, size=n).astype(float)
    return y, p, w


def test_auc_and_ap_match_sklearn_with_ties_and_weights(arrays):
    y, p, w = arrays
    assert M.roc_auc(y, p)[0] == pytest.approx(skm.roc_auc_score(y, p), abs=TOL)
    assert M.roc_auc(y, p, w)[0] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=TOL)
    assert M.average_precision(y, p)[0] == pytest.approx(skm.average_precision_score(y, p), abs=TOL)
    assert M.average_precision(y, p, w)[0] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=TOL)
    assert np.isnan(M.roc_auc(np.zeros(5), np.arange(5.0))[0])


def test_losses_and_confusion_metrics_match_sklearn(arrays):
    y, p, w = arrays
    assert M.log_loss_binary(y, p)[0] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), abs=TOL)
    assert M.log_loss_binary(y, p, w)[0] == pytest.approx(skm.log_loss(y, p, sample_weight=w, labels=[0, 1]), abs=TOL)
    assert M.brier(y, p, w)[0] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), abs=TOL)
    pred = (p >= 0.4).astype(float)
    c = {k: v[0] for k, v in M.confusion_metrics(y, pred, w).items()}
    assert c["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w), abs=TOL)
    assert c["sensitivity"] == pytest.approx(skm.recall_score(y, pred, sample_weight=w), abs=TOL)
    assert c["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0, sample_weight=w), abs=TOL)
    assert c["ppv"] == pytest.approx(skm.precision_score(y, pred, sample_weight=w), abs=TOL)
    assert c["npv"] == pytest.approx(skm.precision_score(y, pred, pos_label=0, sample_weight=w), abs=TOL)
    assert c["f1"] == pytest.approx(skm.f1_score(y, pred, sample_weight=w), abs=TOL)


def test_multilabel_and_multiclass_figures_match_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random((300, 17)) < 0.15).astype(float)
    p = np.clip(0.4 * y + 0.6 * rng.random((300, 17)), 0, 1)
    expected = np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(17)])
    assert M.mlogloss(y, p) == pytest.approx(expected, abs=TOL)
    pred = (p > 0.5).astype(float)
    assert M.exact_match(y, pred)[0] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    yc = np.eye(3)[rng.integers(0, 3, 200)]
    pc = rng.random((200, 3))
    pc /= pc.sum(1, keepdims=True)
    assert M.categorical_log_loss(yc, pc)[0] == pytest.approx(skm.log_loss(yc.argmax(1), pc), abs=TOL)
    micro = M.roc_auc(y.ravel(), p.ravel())[0]
    assert micro == pytest.approx(skm.roc_auc_score(y, p, average="micro"), abs=TOL)


def test_float32_probabilities_do_not_become_nan_or_inf():
    p32 = np.array([1.0 - 1e-9, 1e-12, 0.5], dtype=np.float32)  # float32 rounds the first to exactly 1.0
    y = np.array([0.0, 1.0, 1.0])
    assert np.float32(p32[0]) == 1.0 and np.float32(1 - 1e-15) == 1.0  # the trap: clipping in float32 does nothing
    loss = M.mlogloss(y, p32)
    assert np.isfinite(loss)
    expected = np.mean([-np.log1p(-(1 - 1e-15)), -np.log(np.float64(np.float32(1e-12))), -np.log(0.5)])
    assert loss == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(M.log_loss_binary(y, p32)[0])


def test_bootstrap_resamples_patients_not_images():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    w = bootstrap_weights(patients, 500, seed=0)
    assert w.shape == (500, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    per_patient = w[:, [0, 3, 4]]
    assert np.all(per_patient.sum(1) == 3)  # three patients drawn with replacement per resample


def test_intervals_cover_the_point_and_shrink_with_data():
    rng = np.random.default_rng(2)

    def width(n):
        y = (rng.random((n, 1)) < 0.4).astype(float)
        p = np.clip(0.35 * y + 0.65 * rng.random((n, 1)), 0, 1)
        r = evaluate_arrays(y, p, y, p, np.arange(n), np.array([0.4]), "binary", ["x"], EvaluateConfig(bootstrap=400))
        auc = r["model"]["per_label"]["x"]["roc_auc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
        return auc["ci_high"] - auc["ci_low"]

    assert width(2000) < width(200)


def test_ranking_figures_are_undefined_on_a_split_of_one_class_either_way():
    """All positives gave PR AUC 1.000 (1.000-1.000), for the model and the prior alike, while all negatives gave n/a:
    without negatives, precision is 1 whatever the model, so both ways read undefined."""
    rng = np.random.default_rng(4)
    yv = (rng.random((200, 1)) < 0.5).astype(float)
    pv = np.clip(0.3 * yv + 0.7 * rng.random((200, 1)), 0, 1)
    for label in (1.0, 0.0):
        y = np.full((50, 1), label)
        r = evaluate_arrays(yv, pv, y, rng.random((50, 1)), np.arange(50), np.array([0.5]), "binary", ["x"],
                            EvaluateConfig(bootstrap=50))  # fmt: skip
        for figures in (r["model"], r["baselines"]["prior"]):
            assert figures["per_label"]["x"]["roc_auc"]["value"] is None
            assert figures["per_label"]["x"]["pr_auc"]["value"] is None
    y2 = np.ones((50, 2))  # multi-label, every label positive everywhere: the micro figures too
    r = evaluate_arrays(np.tile(yv, 2), np.tile(pv, 2), y2, rng.random((50, 2)), np.arange(50), np.array([0.5, 0.5]),
                        "multilabel", ["a", "b"], EvaluateConfig(bootstrap=50))  # fmt: skip
    assert r["model"]["micro"]["pr_auc"]["value"] is None and r["model"]["micro"]["roc_auc"]["value"] is None
    assert np.isnan(M.average_precision(np.ones(5), np.linspace(0, 1, 5))[0])  # the numpy reference agrees


def test_operating_points_are_chosen_on_validation_only():
    rng = np.random.default_rng(3)
    yv = (rng.random(500) < 0.5).astype(float)
    pv = np.clip(0.3 * yv + 0.7 * rng.random(500), 0, 1)
    t = choose_threshold(yv, pv, "sensitivity", 0.95)
    sens, _ = rates(yv, pv, np.array([t]))
    assert sens[0] >= 0.95
    above = np.unique(pv[pv > t])  # above[0] splits val as t does; above[1] is the next split up
    assert rates(yv, pv, above[:1])[0][0] >= 0.95 > rates(yv, pv, above[1:2])[0][0]  # the highest such threshold
    assert not np.isin(t, pv) and t > np.max(pv[pv < t])  # halfway in a gap: no val score sits on it
    t_spec = choose_threshold(yv, pv, "specificity", 0.9)
    assert rates(yv, pv, np.array([t_spec]))[1][0] >= 0.9
    fpr, tpr, thr = skm.roc_curve(yv, pv)
    t_youden, theirs = choose_threshold(yv, pv, "youden"), thr[np.argmax(tpr - fpr)]  # sklearn's is a score
    assert np.max(pv[pv < theirs]) < t_youden < theirs  # the same split of val, halfway to the next score down
    assert rates(yv, pv, np.array([t_youden])) == rates(yv, pv, np.array([theirs]))
    one = np.full(40, 0.0908688977)  # a collapsed model: one output; ONNX gave 0.09086886 and the decision flipped
    t_one = choose_threshold((np.arange(40) % 2).astype(float), one, "youden")
    assert abs(t_one - one[0]) > 0.01
    yt = (rng.random(300) < 0.5).astype(float)
    pt = rng.random(300)
    a = evaluate_arrays(
        yv[:, None],
        pv[:, None],
        yt[:, None],
        pt[:, None],
        np.arange(300),
        np.array([0.5]),
        "binary",
        ["x"],
        EvaluateConfig(operating_point="sensitivity=0.9", bootstrap=0),
    )
    b = evaluate_arrays(
        yv[:, None],
        pv[:, None],
        yt[:, None],
        1 - pt[:, None],
        np.arange(300),
        np.array([0.5]),
        "binary",
        ["x"],
        EvaluateConfig(operating_point="sensitivity=0.9", bootstrap=0),
    )
    assert a["operating_point"]["thresholds"] == b["operating_point"]["thresholds"]  # test predictions never move it
    assert [r["rule"] for r in a["tradeoff"]["x"]][:3] == ["Youden's J", "threshold 0.5", "sensitivity 0.8"]
    with pytest.raises(ConfigError):
        parse_operating_point("sensitivity=1.5")


def test_baselines_and_the_prior_flag():
    rng = np.random.default_rng(4)
    y = (rng.random((400, 2)) < 0.3).astype(float)
    good = np.clip(0.5 * y + 0.5 * rng.random((400, 2)), 0, 1)
    good[:, 1] = rng.random(400)  # label 1: pure noise
    r = evaluate_arrays(
        y, good, y, good, np.arange(400), y.mean(0), "multilabel", ["real", "noise"], EvaluateConfig(bootstrap=300)
    )
    assert r["beats_prior"] == {"real": True, "noise": False}
    base = r["baselines"]
    assert base["prior"]["per_label"]["real"]["roc_auc"]["value"] == 0.5
    assert base["all_negative"]["per_label"]["real"]["sensitivity"]["value"] == 0.0
    assert base["all_negative"]["per_label"]["real"]["specificity"]["value"] == 1.0
    assert base["majority"]["per_label"]["real"]["accuracy"]["value"] == pytest.approx(1 - y[:, 0].mean())
    assert "exact_match" in r["model"]["overall"] and "roc_auc" in r["model"]["micro"]


def test_calibration_and_temperature():
    rng = np.random.default_rng(5)
    true_p = rng.uniform(0.05, 0.95, 20000)
    y = (rng.random(20000) < true_p).astype(float)  # calibrated by construction
    over = apply_temperature(true_p, 0.3)  # an overconfident copy
    t = fit_temperature(y, over)
    assert t == pytest.approx(1 / 0.3, rel=0.05)
    assert reliability(y, apply_temperature(over, t))["ece"] < reliability(y, over)["ece"]
    rel = reliability(np.array([0, 1, 1, 0.0]), np.array([0.05, 0.95, 0.85, 0.15]), bins=10)
    assert rel["count"] == [1, 1, 1, 1] and rel["ece"] == pytest.approx(0.1)


def test_temperature_scaling_is_fitted_on_val_and_applied_to_test():
    rng = np.random.default_rng(6)
    true_p = rng.uniform(0.05, 0.95, (3000, 1))
    y = (rng.random((3000, 1)) < true_p).astype(float)
    over = apply_temperature(true_p, 0.25)

    def evaluate(**settings):
        return evaluate_arrays(
            y[:1500],
            over[:1500],
            y[1500:],
            over[1500:],
            np.arange(1500),
            np.array([0.5]),
            "binary",
            ["x"],
            EvaluateConfig(bootstrap=0, **settings),
        )

    r = evaluate(temperature_scaling=True)
    assert r["calibration"]["temperature"] == pytest.approx(4.0, rel=0.15)
    t_raw = r["operating_point"]["thresholds"]["x"]  # what predict and the package compare the model's own p with
    sens = ((over[1500:, 0] >= t_raw) & (y[1500:, 0] == 1)).sum() / (y[1500:, 0] == 1).sum()
    assert sens == pytest.approx(r["model"]["per_label"]["x"]["sensitivity"]["value"])  # the report's own figure
    row = next(row for row in r["tradeoff"]["x"] if row["rule"] == r["operating_point"]["rule"])
    assert row["threshold"] == pytest.approx(t_raw)  # the trade-off table printed the scaled one (0.92 for 0.66)
    sure = evaluate(temperature_scaling=True, operating_point="sensitivity=0.95")  # far from p = 0.5
    t_sure = sure["operating_point"]["thresholds"]["x"]
    sens = ((over[1500:, 0] >= t_sure) & (y[1500:, 0] == 1)).sum() / (y[1500:, 0] == 1).sum()
    assert sens == pytest.approx(sure["model"]["per_label"]["x"]["sensitivity"]["value"])
    plain = evaluate()
    assert r["model"]["per_label"]["x"]["log_loss"]["value"] < plain["model"]["per_label"]["x"]["log_loss"]["value"]
    from meddx.evaluation.calibration import calibration_lines

    assert not any("worse" in line for line in calibration_lines(r["calibration"], ["x"], "test"))
    shifted = evaluate_arrays(y[:1500], over[:1500], y[1500:], true_p[1500:], np.arange(1500), np.array([0.5]),
                              "binary", ["x"], EvaluateConfig(bootstrap=0, temperature_scaling=True))  # fmt: skip
    said = calibration_lines(shifted["calibration"], ["x"], "external-b")  # test was calibrated already: it harms
    assert (
        "fitted on val, 1500 samples" in said[0] and "on external-b, the scaling made x's calibration worse" in said[-1]
    )
    assert r["model"]["per_label"]["x"]["roc_auc"]["value"] == pytest.approx(
        plain["model"]["per_label"]["x"]["roc_auc"]["value"]
    )


def test_collapse_fires_on_collapse_not_on_short_training_or_one_sample():
    """Outputs within 0.01 of each other that still rank the classes (AUC 0.74 after a short training) are not a
    collapse; constant outputs are; one val sample is too few to judge."""
    from meddx.training.collapse import detect_collapse

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    close = 0.3 + 0.004 * (y + rng.normal(0, 1.0, 200)).clip(-1, 1.49)  # spread under 0.01, still ranks
    assert np.ptp(close) < 0.01 and detect_collapse(close, ["PD"], labels=y)["collapsed"] is False
    assert detect_collapse(close, ["PD"])["collapsed"] is True  # without labels only the spread can speak
    constant = np.full(200, 0.31) + rng.normal(0, 1e-4, 200)
    result = detect_collapse(constant, ["PD"], labels=y)
    assert result["collapsed"] and result["flat_labels"] == ["PD"] and result["likely_causes"]
    one = detect_collapse(np.array([0.4]), ["PD"], labels=np.array([1]))
    assert one["collapsed"] is False and one["judged"] is False


def test_the_likely_cause_of_a_collapse_comes_from_the_runs_own_record():
    """The trial's resident set lr=1000: the training loss reached 1.7e6, yet the report listed five generic causes."""
    from meddx.training.collapse import evident_causes

    blown = evident_causes([{"epoch": 1, "train_loss": 1680112.0}, {"epoch": 2, "train_loss": float("nan")}], 1000.0)
    assert len(blown) == 1 and "learning rate 1000 likely far too high" in blown[0] and "reached nan" in blown[0]
    assert "far above" in evident_causes([{"train_loss": 0.7}], 0.5)[0]
    assert "too low" in evident_causes([{"train_loss": 0.69}], 1e-7)[0]
    assert evident_causes([{"train_loss": 0.69}], 2e-3) == []  # nothing in the record points anywhere


def test_decision_curve_net_benefit():
    """Net benefit by hand on 10 patients, a perfect model's equals the prevalence, and a useless one's never beats
    treating all or none (Vickers and Elkin 2006)."""
    from meddx.evaluation.decision import decision_curve, decision_table, net_benefit

    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.1, 0.3, 0.05, 0.4])
    # at t = 0.5: TP = 2, FP = 1 of 10 -> 0.2 - 0.1 * 1 = 0.1
    assert net_benefit(y, p, np.array([0.5]))[0] == pytest.approx(0.1)
    perfect = decision_curve(y, y.astype(float))
    assert np.allclose(perfect["model"], 0.3) and perfect["useful_range"] == [0.01, 0.99]
    assert perfect["treat_all"][49] == pytest.approx(0.3 - 0.7)  # t = 0.5: odds 1
    useless = decision_curve(y, np.full(10, 0.3))
    assert useless["useful_range"] is None
    assert decision_table(perfect)[0] == ["5%", "0.3000", f"{0.3 - 0.7 * 0.05 / 0.95:.4f}", "0"]


def test_micro_auc_has_an_interval():
    """Micro ROC and PR AUC of a multi-label model came without interval; now from the same patient resamples."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from meddx.config import EvaluateConfig
    from meddx.evaluation.intervals import score_with_intervals

    rng = np.random.default_rng(3)
    y = (rng.random((300, 4)) < 0.3).astype(float)
    p = np.clip(0.4 * y + 0.6 * rng.random((300, 4)), 0, 1)
    figures = score_with_intervals(y, p, (p > 0.5).astype(float), "multilabel", list("abcd"), np.arange(300),
                                   EvaluateConfig(bootstrap=300))  # fmt: skip
    micro = figures["micro"]
    assert micro["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p, average="micro"), abs=1e-9)
    assert micro["pr_auc"]["value"] == pytest.approx(average_precision_score(y, p, average="micro"), abs=1e-9)
    assert micro["roc_auc"]["ci_low"] < micro["roc_auc"]["value"] < micro["roc_auc"]["ci_high"]


def test_ece_has_an_interval_and_its_point_matches():
    from meddx.evaluation.calibration import ece_weighted, reliability

    rng = np.random.default_rng(4)
    p = rng.random(500)
    y = (rng.random(500) < p**1.5).astype(float)  # miscalibrated on purpose
    point = ece_weighted(y, p, np.ones((1, 500)))[0]
    assert point == pytest.approx(reliability(y, p)["ece"], abs=1e-12)
    w = rng.multinomial(500, np.full(500, 1 / 500), size=200).astype(float)
    lo, hi = np.percentile(ece_weighted(y, p, w), [2.5, 97.5])
    assert lo < point < hi and hi - lo < 0.1


def test_operating_point_table_has_intervals():
    """Each trade-off row's test sensitivity, specificity, PPV and NPV come with an interval from the resamples."""
    from meddx.evaluation.evaluation import bootstrap_weights, tradeoff_table

    rng = np.random.default_rng(5)
    y_val, y_test = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    p_val = np.clip(0.35 * y_val + 0.65 * rng.random(300), 0, 1)
    p_test = np.clip(0.35 * y_test + 0.65 * rng.random(300), 0, 1)
    rows = tradeoff_table(y_val, p_val, y_test, p_test, bootstrap_weights(np.arange(300), 300, 0))
    for row in rows:
        t = row["threshold"]
        assert row["test_sensitivity"] == pytest.approx(np.mean(p_test[y_test == 1] >= t))
        lo, hi = row["test_sensitivity_ci"]
        assert lo <= row["test_sensitivity"] <= hi and hi - lo < 0.2
    assert "test_sensitivity_ci" not in tradeoff_table(y_val, p_val, y_test, p_test)[0]


def test_a_multiclass_report_has_no_all_negative_baseline():
    """Three classes: the all-negative rows were argmaxed to the first class, which showed sensitivity 1.000 and a
    log loss of 11 beside 1.099 in the Overall table; every sample has a class, so there is no such baseline."""
    from meddx.evaluation.sections import _summary_rows

    rng = np.random.default_rng(5)
    y = np.eye(3)[rng.integers(0, 3, 300)]
    p = np.clip(0.6 * y + 0.4 * rng.random((300, 3)), 1e-3, None)
    p /= p.sum(1, keepdims=True)
    r = evaluate_arrays(y, p, y, p, np.arange(300), y.mean(0), "multiclass", list("abc"), EvaluateConfig(bootstrap=0))
    assert set(r["baselines"]) == {"prior", "random", "majority"}
    assert [name for name, _ in _summary_rows(r)] == [
        "model",
        "baseline: prior",
        "baseline: random",
        "baseline: majority",
    ]


@pytest.mark.parametrize("seed", range(5))
def test_the_random_baseline_carries_no_luck_of_a_draw(seed):
    """One uniform draw scored a multi-label report's random baseline at macro ROC AUC 0.616 (0.540-0.703), above
    the model; its scores are now spread alike over positives and negatives: AUC exactly 0.5, its interval around
    0.5, uniform scores still (sensitivity and specificity at 0.5 near one half)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((240, 3)) < [0.3, 0.5, 0.7]).astype(float)
    y[0, 0] = np.nan  # an unknown label
    p = np.clip(0.5 * np.nan_to_num(y) + 0.5 * rng.random((240, 3)), 1e-3, 1 - 1e-3)
    r = evaluate_arrays(y, p, y, p, np.arange(240), np.nanmean(y, 0), "multilabel", list("abc"),
                        EvaluateConfig(bootstrap=300))  # fmt: skip
    for figures in r["baselines"]["random"]["per_label"].values():
        assert figures["roc_auc"]["value"] == pytest.approx(0.5)
        assert figures["roc_auc"]["ci_low"] < 0.5 < figures["roc_auc"]["ci_high"]
        assert 0.45 <= figures["sensitivity"]["value"] <= 0.55 and 0.45 <= figures["specificity"]["value"] <= 0.55


def test_a_proportion_of_0_or_1_gets_an_exact_interval_not_a_point():
    """19 of 19 negatives called negative gave 'specificity 1.000 (1.000-1.000)': every patient resample agrees, so
    the bootstrap interval has no width. Such a figure now gets the exact binomial interval of its count (19: the
    lower bound (0.025)^(1/19) = 0.824); figures of any other value keep their bootstrap interval."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.intervals import score_with_intervals

    y = np.array([[1.0]] * 30 + [[0.0]] * 19)
    p = np.r_[np.linspace(0.3, 0.9, 30), np.full(19, 0.1)][:, None]
    pred = (p >= 0.5).astype(float)  # every negative right; some positives missed
    out = score_with_intervals(y, p, pred, "binary", ["x"], np.arange(49).astype(str), EvaluateConfig(bootstrap=200))
    spec, sens = out["per_label"]["x"]["specificity"], out["per_label"]["x"]["sensitivity"]
    assert spec["value"] == 1.0 and spec["ci_low"] == pytest.approx(0.025 ** (1 / 19)) and spec["ci_exact"]
    assert out["macro"]["specificity"]["ci_low"] == pytest.approx(0.824, abs=1e-3)
    assert "ci_exact" not in sens and sens["ci_low"] < sens["value"] < sens["ci_high"]
    none = score_with_intervals(y, p, pred, "binary", ["x"], np.arange(49).astype(str), EvaluateConfig(bootstrap=0))
    assert "ci_low" not in none["per_label"]["x"]["specificity"]  # no bootstrap: no interval at all
    silent = score_with_intervals(
        y, p, 0 * pred, "binary", ["x"], np.arange(49).astype(str), EvaluateConfig(bootstrap=200)
    )
    f1 = silent["per_label"]["x"]["f1"]  # nobody called positive: F1 0 in every resample, no '(0.000-0.000)'
    assert f1["value"] == 0 and "ci_low" not in f1 and f1["ci_none"] == "every resample the same"


def test_a_perfect_ranking_of_few_samples_has_no_pretended_interval_and_the_tradeoff_rows_are_exact():
    """5 test images ranked perfectly showed 'ROC AUC 1.000 (1.000-1.000) ... beats prior: yes'; and the trade-off
    table gave specificity 1.000 (1.000-1.000) on 26 negatives beside the headline's exact 0.868-1.000. Now the AUC
    says it has no interval and the chance of such a ranking (1 / C(5, 2) = 0.1: not beating the prior), and the
    table's 0 or 1 proportions get the same exact interval as the headline's."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.evaluation.sections import fmt

    y_val = np.array([[1.0], [0.0]] * 20)
    p_val = np.clip(y_val * 0.5 + np.linspace(0.1, 0.4, 40)[:, None], 0, 1)
    y, p = np.array([[1.0], [1.0], [0.0], [0.0], [0.0]]), np.array([[0.9], [0.8], [0.2], [0.3], [0.1]])
    cfg = EvaluateConfig(bootstrap=200)
    result = evaluate_arrays(y_val, p_val, y, p, np.arange(5), np.array([0.4]), "binary", ["x"], cfg)
    auc = result["model"]["per_label"]["x"]["roc_auc"]
    assert "ci_low" not in auc and auc["p_exact"] == pytest.approx(0.1) and not result["beats_prior"]["x"]
    assert fmt(auc) == "1.000 (no interval; chance p 0.1)"
    rows = result["tradeoff"]["x"]
    row = next(r for r in rows if r["test_specificity"] == 1.0)
    assert row["test_specificity_ci"] == pytest.approx([0.025 ** (1 / 3), 1.0])  # 3 negatives, as the headline
    y_many, p_many = np.repeat(y, 8, 0), np.repeat(p, 8, 0) + np.random.default_rng(0).random((40, 1)) * 0.05
    many = evaluate_arrays(y_val, p_val, y_many, p_many, np.arange(40), np.array([0.4]), "binary", ["x"], cfg)
    assert many["model"]["per_label"]["x"]["roc_auc"]["ci_none"] and many["beats_prior"]["x"]  # p = 1 / C(40, 16)
    two = evaluate_arrays(
        y_val,
        p_val,
        np.repeat(y[1:3], 10, 0),
        np.repeat(p[1:3], 10, 0),
        np.repeat([0, 1], 10),
        np.array([0.4]),
        "binary",
        ["x"],
        cfg,
    )  # fmt: skip  (2 patients of 10 images each)
    assert two["model"]["per_label"]["x"]["roc_auc"]["p_exact"] == 0.5 and not two["beats_prior"]["x"]
    assert two["model"]["per_label"]["x"]["specificity"]["ci_low"] == pytest.approx(0.025)  # 1 patient, not 10
    from meddx.evaluation.sections import HEADLINE, _label_section

    rows = {r[0]: r for r in _label_section({**many, "split": "test"}, "x")["rows"]}
    assert rows["baseline: all_negative"][1 + HEADLINE.index("log_loss")] == "n/a (p = 0)"  # not 25.79 (0.1-...)
    assert rows["baseline: majority"][1 + HEADLINE.index("log_loss")] == "n/a (p = 0 or 1)"  # hard 0/1 too
    from meddx.evaluation.sections import _overall_section

    overall = _overall_section(many)
    where = next(i for i, k in enumerate(overall["header"]) if "log" in k.lower())
    assert {r[0]: r[where] for r in overall["rows"]}["baseline: all_negative"] == "n/a (p = 0)"  # was 15.111


def test_cv_scores_of_a_multiclass_task_are_categorical():
    """`meddx cv` on NORMAL/BACTERIA/VIRUS reported the mean of one-vs-rest binary log losses (0.504, the true one
    0.844) and an exact match at 0.5 (0.607, argmax accuracy 0.648); a multi-class task now gets its own figures."""
    from sklearn.metrics import balanced_accuracy_score, log_loss

    from meddx.evaluation.scores import multiclass_scores

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 200)
    y = np.eye(3)[truth]
    p = rng.dirichlet([1, 1, 1], 200) + 0.8 * y
    p /= p.sum(1, keepdims=True)
    s = multiclass_scores(y, p, ["a", "b", "c"], prior=np.full(3, 1 / 3))
    assert s["model"]["log_loss"] == pytest.approx(log_loss(truth, p))
    assert s["model"]["accuracy"] == pytest.approx(np.mean(p.argmax(1) == truth))
    assert s["model"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, p.argmax(1)))
    assert s["baselines"]["prior"]["log_loss"] == pytest.approx(np.log(3)) and "all_zero" not in s["baselines"]


def test_temperature_scaling_of_a_multiclass_run_is_fitted_not_ignored():
    """`--temperature-scaling` on a three-class run wrote a report saying 'temperature scaling: off' with unchanged
    ECEs; softmax rows are now scaled too (log p / T), which keeps every argmax and lowers val's log loss."""
    from sklearn.metrics import log_loss

    from meddx.evaluation.calibration import apply_temperature, fit_temperature

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 300)
    logits = 3.0 * (np.eye(3)[truth] + rng.normal(0, 0.8, (300, 3)))  # overconfident
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    t = fit_temperature(np.eye(3)[truth], p, "multiclass")
    q = apply_temperature(p, t, "multiclass")
    assert t > 1.5 and np.allclose(q.sum(1), 1) and (q.argmax(1) == p.argmax(1)).all()
    assert log_loss(truth, q) < log_loss(truth, p) - 0.05


def test_a_label_with_few_positive_patients_is_judged_by_the_exact_chance_of_its_ranking():
    """A course label with 1 positive patient among 100 read 'ROC AUC 0.705 (0.619-0.786) ... beats prior: yes' on
    noise images: the patient bootstrap redrew that one positive in most resamples, so its interval hid how little one
    patient says. Under 5 positive (or negative) patients: no interval; the verdict rests on the exact chance that a
    random ranking of those patients does as well (Mann-Whitney), with or without a bootstrap."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.evaluation.metrics import rank_chance
    from meddx.evaluation.sections import fmt, warnings_of

    rng = np.random.default_rng(0)
    y_val = np.array([[1.0], [0.0]] * 20)
    p_val = np.clip(y_val * 0.5 + rng.random((40, 1)) * 0.4, 0, 1)
    y = np.zeros((100, 1))
    y[0] = 1.0
    p = rng.random((100, 1))
    p[0] = 0.72  # ranked above about 70% of the negatives: AUC ~0.7
    for boot in (300, 0):
        result = evaluate_arrays(y_val, p_val, y, p, np.arange(100), np.array([0.01]), "binary", ["x"],
                                 EvaluateConfig(bootstrap=boot))  # fmt: skip
        auc = result["model"]["per_label"]["x"]["roc_auc"]
        assert 0.6 < auc["value"] < 0.8 and "ci_low" not in auc and not result["beats_prior"]["x"]
        assert auc["p_exact"] == pytest.approx(rank_chance(auc["value"], 1, 99)) and auc["p_exact"] > 0.2
        assert fmt(auc) == f"{auc['value']:.3f} (no interval; chance p {auc['p_exact']:.2g})"
    said = warnings_of({**result, "collapse": {"evaluation": result["collapse"]}})  # as the report nests it
    assert any("does not beat the prior" in w and "x" in w for w in said)
    top = p * 0.9
    top[:3] = 0.99  # three positive patients ranked above every negative
    three = np.zeros((100, 1))
    three[:3] = 1.0
    good = evaluate_arrays(y_val, p_val, three, top, np.arange(100), np.array([0.01]), "binary", ["x"],
                           EvaluateConfig(bootstrap=300))  # fmt: skip
    assert good["model"]["per_label"]["x"]["roc_auc"]["p_exact"] == pytest.approx(1 / math.comb(100, 3))
    assert good["beats_prior"]["x"]
    five = np.zeros((100, 1))
    five[:5] = 1.0
    judged = evaluate_arrays(y_val, p_val, five, p, np.arange(100), np.array([0.01]), "binary", ["x"],
                             EvaluateConfig(bootstrap=300))  # fmt: skip
    assert "ci_low" in judged["model"]["per_label"]["x"]["roc_auc"]  # 5 of each: the bootstrap interval


def test_a_proportion_no_resample_changes_between_0_and_1_has_no_interval():
    """'test PPV 0.500 (0.500-0.500)': the two images called positive were one patient's, one of each class, so every
    resample held the same pair. No count of independent draws bounds it: no interval, said; 0 or 1 keep theirs."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.evaluation.intervals import exact_bounds
    from meddx.evaluation.sections import fmt

    y_val = np.array([[1.0], [0.0]] * 20)
    p_val = y_val * 0.5 + 0.25  # separable at any threshold between 0.25 and 0.75
    y = np.array([[1.0], [0.0]] + [[1.0], [0.0]] * 29)
    p = np.array([[0.9], [0.9]] + [[0.2], [0.1]] * 29)  # patient 0's two images are the only ones called positive
    patients = np.array([0, 0, *range(1, 59)])
    result = evaluate_arrays(
        y_val, p_val, y, p, patients, np.array([0.5]), "binary", ["x"], EvaluateConfig(bootstrap=300)
    )
    ppv = result["model"]["per_label"]["x"]["ppv"]
    assert ppv["value"] == 0.5 and "ci_low" not in ppv and fmt(ppv) == "0.500 (no interval: every resample the same)"
    assert exact_bounds(0.5, 2, 0.95) is None and exact_bounds(0.0, 3, 0.95) == pytest.approx(
        (0.0, 1 - 0.025 ** (1 / 3))
    )
