"""Evaluation a reviewer trusts: metrics with patient-bootstrap intervals, operating points chosen on val,
calibration, trivial baselines, collapse detection, plots and the report (`report.evaluate_run`).

Import the modules themselves (`meddx.evaluation.metrics` is numpy only); this package imports nothing eagerly.
"""
