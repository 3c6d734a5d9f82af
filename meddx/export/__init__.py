"""Export a run as a self-contained model package (ONNX or TorchScript) with a parity check on real images."""

from meddx.export.package import ExportError, export_run

__all__ = ["ExportError", "export_run"]
