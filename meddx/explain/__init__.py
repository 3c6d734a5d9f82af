"""Grad-CAM maps, overlays and galleries for image runs."""

from meddx.explain.gallery import gallery
from meddx.explain.gradcam import Explainer, explain_file, find_target_layer, overlay

__all__ = ["Explainer", "explain_file", "find_target_layer", "gallery", "overlay"]
