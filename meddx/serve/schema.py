"""The service's answers as pydantic models, so the OpenAPI schema says exactly what comes back, errors included
(schemathesis checks every answer against it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one sentence saying what is wrong (FastAPI's own validation gives a list)."""

    detail: str | list[dict[str, Any]]


class Domain(BaseModel):
    """The input-domain check: is the scan like the training scans, and if not, why."""

    in_distribution: bool
    distance: float
    distance_limit: float
    correlation: float
    correlation_limit: float
    warnings: list[str]


class Prediction(BaseModel):
    """POST /predict: per-label probabilities and decisions at the operating point chosen on val."""

    filename: str | None = None
    probabilities: dict[str, float]
    decisions: dict[str, bool]
    thresholds: dict[str, float] | None
    operating_point: str
    domain: Domain
    model_caveats: list[str] = Field(
        [], description="What the model's own test split says against trusting it (does not beat the prior, ...)."
    )
    backend: str
    image_png: str | None = Field(None, description="The decoded scan, base64 PNG (with image=true).")
    cam_png: str | None = Field(None, description="The Grad-CAM overlay, base64 PNG (with cam=true).")
    cam_label: str | None = None
    cam_error: str | None = Field(None, description="Why no map was made (cam=true on a package without weights).")
    elapsed_ms: float


class Health(BaseModel):
    """GET /health: alive, and (without a token) what is loaded."""

    status: str
    model: str | None = None
    backend: str | None = None
    labels: list[str] | None = None
    threads: dict[str, int] | None = Field(
        None, description="Usable cores, request worker threads, ONNX Runtime's intra-op and inter-op threads."
    )
    batching: dict[str, int | float] | None = Field(
        None, description="Micro-batching: max_batch (1: off), wait_ms, model calls, requests answered, waiting."
    )


class ModelInfo(BaseModel):
    """GET /model: labels, operating point, the validation table behind the threshold control, the card."""

    name: str
    kind: str
    backend: str
    task: str
    labels: list[str]
    thresholds: dict[str, float] | None
    operating_point: str
    grad_cam: bool
    input: dict[str, Any]
    val_rates: dict[str, Any]
    caveats: list[str] = []
    card: str


def errors(*codes: int) -> dict:
    """FastAPI `responses` declaring these status codes with the error body."""
    return {code: {"model": ErrorBody} for code in codes}
