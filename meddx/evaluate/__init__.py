"""Evaluation a reviewer trusts: metrics with patient-bootstrap intervals, operating points chosen on val,
calibration, trivial baselines, collapse detection, plots and the report."""

from meddx._callable import make_callable
from meddx.evaluate.evaluation import bootstrap_weights, evaluate_arrays
from meddx.evaluate.metrics import mlogloss
from meddx.evaluate.report import evaluate_run

__all__ = ["bootstrap_weights", "evaluate_arrays", "evaluate_run", "mlogloss"]
make_callable(__name__, "evaluate")
