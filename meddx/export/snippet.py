"""The model card's "running the file without meddx" code: numpy, Pillow and onnxruntime only, preparing a PNG or
JPEG scan exactly as meddx does (a test runs it in a process without torch or meddx and compares to 1e-4)."""

SNIPPET = """import json
import numpy as np
import onnxruntime as ort
from PIL import Image

prep = json.load(open("preprocess.json"))
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def prepare(path):
    '''A PNG/JPEG scan as the model's (C, H, W) float32 input, step by step as meddx prepares it.'''
    img = Image.open(path)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "LA"):
        img = img.convert("L")
    elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    a = np.asarray(img)
    if a.dtype == np.int32:  # 16-bit PNG opened in mode I
        a = a.astype(np.float32) / (65535.0 if a.max() > 255 else 255.0)
    else:
        a = a.astype(np.float32) / {np.dtype("uint8"): 255.0, np.dtype("uint16"): 65535.0}.get(a.dtype, 1.0)
    x = a[None] if a.ndim == 2 else np.moveaxis(a[..., :3], -1, 0)  # (C, H, W)
    if x.shape[0] != prep["channels"]:
        x = np.repeat(x, prep["channels"], 0) if x.shape[0] == 1 else np.tensordot(LUMA, x, axes=1)[None]
    h, w = prep["image_size"]
    if x.shape[1:] != (h, w):  # bilinear with antialiasing: Pillow's float resize equals torch's to 1e-7
        x = np.stack([np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.BILINEAR)) for c in x])
    if prep["normalize"] == "dataset":
        x = (x - np.array(prep["mean"])[:, None, None]) / np.array(prep["std"])[:, None, None]
    elif prep["normalize"] == "sample":
        x = (x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), ddof=1, keepdims=True) + 1e-6)
    return x.astype(np.float32)


def predict(paths):
    '''(N, labels) probabilities, in the order of labels.json.'''
    session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"image": np.stack([prepare(p) for p in paths])})[0]
"""
