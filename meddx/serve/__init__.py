"""The HTTP service (FastAPI + uvicorn) over a model package or run folder."""

from meddx.serve.app import create_app, serve
from meddx.serve.predictor import Predictor, UploadError

__all__ = ["Predictor", "UploadError", "create_app", "serve"]
