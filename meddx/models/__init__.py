"""Model registry and factory: `create_model(name, in_chans, num_classes, weights=None)`."""

from meddx.models import (
    cnn,  # noqa: E402,F401 - registers the small CNNs
    sequence,  # noqa: E402,F401 - registers the token-sequence models
    text,  # noqa: E402,F401 - registers RCNN, DPCNN and the attention BiGRU
)
from meddx.models.registry import MODEL_INFO, create_model, list_models, load_weights, min_input_size, register_model

__all__ = ["MODEL_INFO", "create_model", "list_models", "load_weights", "min_input_size", "register_model"]
