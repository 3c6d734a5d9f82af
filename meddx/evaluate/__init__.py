"""Evaluation of a run's predictions: metrics beside baselines, written to metrics.json and report.md."""

from meddx.evaluate.metrics import evaluate_run, label_metrics, mlogloss

__all__ = ["evaluate_run", "label_metrics", "mlogloss"]
