"""Read one sample's pixels (PNG/JPEG, DICOM, NPY/NPZ, MedMNIST arrays) into a float (C, H, W) array."""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from meddx.data.records import Record
from meddx.data.stacks import rescale_views
from meddx.errors import DataError

Layout = Literal["hw", "hwc", "dhw"]
PIL_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
DICOM_EXTENSIONS = {".dcm", ".dicom"}
ARRAY_EXTENSIONS = {".npy", ".npz"}
READABLE_EXTENSIONS = PIL_EXTENSIONS | DICOM_EXTENSIONS | ARRAY_EXTENSIONS
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# pixels in one image plane: a 140 KB PNG can claim 12000 x 12000 and take 20 GB to train; a volume may hold 8 times
# as many values in all (a CT of 600 slices of 512 x 512 fits)
MAX_PIXELS = int(os.environ.get("MEDDX_MAX_PIXELS", 40_000_000))
VOLUME_FACTOR = 8


class ImageTooLarge(DataError):
    """A scan whose header claims more pixels than MAX_PIXELS (the service answers it with 413)."""


def check_size(path: str, height: int, width: int, depth: int = 1, channels: int = 1) -> None:
    """Refuse a scan whose header claims an image plane over MAX_PIXELS pixels (or a volume over VOLUME_FACTOR times
    that many values) before it is decoded."""
    plane, values = int(height) * int(width), int(height) * int(width) * int(depth) * int(channels)
    if plane > MAX_PIXELS or values > VOLUME_FACTOR * MAX_PIXELS:
        size = f"{int(height)} x {int(width)}" + (f" x {int(depth)} frames" if depth > 1 else "")
        raise ImageTooLarge(
            f"{path}: {size} pixels, over the limit of {MAX_PIXELS:,} per image "
            "(resize it, or set MEDDX_MAX_PIXELS to allow more)"
        )


def check_finite(path: str, arr: np.ndarray) -> np.ndarray:
    """Refuse NaN or infinite values: they would make every normalised image, loss and weight NaN."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(f"{path}: {bad:,} NaN or infinite pixel value(s) of {arr.size:,}")
    return arr


def read_array_file(path: str, key: str | None) -> np.ndarray:
    """Whole array of an .npy file or of one key of an .npz file (pickles refused)."""
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                if key is None:
                    if len(npz.files) != 1:
                        raise DataError(f"{path}: holds arrays {npz.files}; name the one to use")
                    key = npz.files[0]
                if key not in npz.files:
                    raise DataError(f"{path}: has no array '{key}' (it has {npz.files})")
                return npz[key]
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure becomes a clear data error
        raise DataError(f"{path}: not a readable NumPy file ({type(e).__name__}: {e})") from None


load_array_file = lru_cache(maxsize=16)(read_array_file)  # cached: a MedMNIST file holds every sample of a data set


def _scale_integers(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 to [0, 1] by their bit depth; other types keep their values (e.g. CT in HU)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return arr.astype(np.float32)


def _read_pil(path: str) -> tuple[np.ndarray, Layout]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # check_size stands guard; PIL's own warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            check_size(path, img.height, img.width, getattr(img, "n_frames", 1), len(img.getbands()))
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode in ("1", "LA"):
                img = img.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            arr = np.asarray(img)
    except Image.DecompressionBombError:  # PIL's own guard, at open, for headers far past ours
        raise ImageTooLarge(f"{path}: its header claims over {MAX_PIXELS:,} pixels, the limit per image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    if arr.dtype == np.int32:  # 16-bit PNGs may open in mode "I"
        arr = arr.astype(np.float32) / (65535.0 if arr.max() > 255 else 255.0)
    else:
        arr = _scale_integers(arr)
    if arr.ndim == 3:
        return arr[..., :3], "hwc"  # drop alpha
    return arr, "hw"


def _read_dicom(path: str, window: tuple[float, float] | None) -> tuple[np.ndarray, Layout]:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds:
        last = f"tag {list(ds.keys())[-1]}" if len(ds) else "its header"
        raise DataError(
            f"{path}: DICOM file has no pixel data: it ends after {last} ({Path(path).stat().st_size:,} bytes), "
            f"cut short or not an image (a report or a presentation state)"
        )
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    check_size(path, int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), frames, int(ds.get("SamplesPerPixel", 1)))
    try:
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: DICOM pixels cannot be decoded ({type(e).__name__}: {e})") from None
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    if samples == 3:
        if frames > 1:
            raise DataError(f"{path}: multi-frame colour DICOM is not supported")
        return arr / 255.0 if arr.max() > 1 else arr, "hwc"
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)  # noqa: E731
        window = (first(ds.WindowCenter), first(ds.WindowWidth))
    if window is not None:
        center, width = window
        arr = np.clip((arr - (center - width / 2.0)) / max(width, 1e-6), 0.0, 1.0)
    else:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 1.0 - arr
    return arr.astype(np.float32), ("dhw" if frames > 1 else "hw")


def read_pixels(record: Record, dicom_window: tuple[float, float] | None = None) -> tuple[np.ndarray, Layout]:
    """Raw pixels of one record as float32 and their layout; integers scaled to [0, 1] by bit depth. Scans over
    MAX_PIXELS values and NaN or infinite values are refused with one line naming the file."""
    arr, layout = _read_pixels(record, dicom_window)
    where = f"{record.source}[{record.index}]" if record.index is not None else record.source
    return check_finite(where, arr), layout


def _read_pixels(record: Record, dicom_window: tuple[float, float] | None) -> tuple[np.ndarray, Layout]:
    path = record.source
    suffix = Path(path).suffix.lower()
    if record.index is not None:
        data = load_array_file(path, record.key)
        arr = data[record.index]
        return _scale_integers(arr), _array_layout(arr)  # MedMNIST colour sets are (N, H, W, 3)
    if not Path(path).is_file():
        raise DataError(f"{_where(record)}: image file not found: {path}")
    if suffix in ARRAY_EXTENSIONS:  # one image per file: read, not cached
        if suffix == ".npy":
            check_size(path, *_plane_first(_npy_shape(path)))
        arr = read_array_file(path, record.key)
        check_size(path, *_plane_first(arr.shape))
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise DataError(f"{path}: array of shape {arr.shape}; expected (H, W) or (C|D, H, W), none of them 0")
        return _scale_integers(arr), _array_layout(arr)
    if suffix in DICOM_EXTENSIONS or (suffix not in PIL_EXTENSIONS and _looks_like_dicom(path)):
        return _read_dicom(path, dicom_window)
    return _read_pil(path)


def _array_layout(arr: np.ndarray) -> Layout:
    """(H, W, 3) is colour, channels last, as PIL and MedMNIST give it (a 64-slice stack of 3 px wide images it is
    not); any other 3-D array is a stack (C or D, H, W); 2-D is one plane."""
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
        return "hwc"
    return "dhw" if arr.ndim == 3 else "hw"


def _plane_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(height, width, the product of the other axes) of an array's shape: its last two axes are the plane."""
    if len(shape) < 2:
        return (1, int(np.prod(shape, dtype=np.int64)) if shape else 1)
    return (shape[-2], shape[-1], int(np.prod(shape[:-2], dtype=np.int64)))


def _npy_shape(path: str) -> tuple[int, ...]:
    """The shape an .npy file's header claims, read without loading the array."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).shape
    except Exception as e:  # noqa: BLE001 - any decoder failure becomes a clear data error
        raise DataError(f"{path}: not a readable NumPy file ({type(e).__name__}: {e})") from None


def _looks_like_dicom(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _where(record: Record) -> str:
    return record.row or record.id


def to_channels(
    pixels: np.ndarray,
    layout: Layout,
    record: Record,
    views: list[int] | None = None,
    view_axis: int = 0,
    channels: int | None = None,
    depth: int | None = None,
) -> np.ndarray:
    """Turn raw pixels into (C, H, W): colour to channels, chosen slices of a stack to channels (`views` chosen on
    stacks of `depth` slices: a stack of another depth gives the slices at the same relative positions)."""
    where = f"{_where(record)} ({record.source})" if record.row else record.source
    if views is not None:
        if layout != "dhw":
            raise DataError(f"{where}: views {views} given but the image is 2-D (shape {pixels.shape})")
        axis = view_axis % 3
        n = pixels.shape[axis]
        views = rescale_views(views, depth, n)
        bad = [v for v in views if not -n <= v < n]
        if bad:
            raise DataError(
                f"{where}: views {bad} out of range for a stack of {n} along axis {view_axis} (shape {pixels.shape})"
            )
        chw = np.stack([np.take(pixels, v, axis=axis) for v in views])
    elif layout == "hw":
        chw = pixels[None]
    elif layout == "hwc":
        chw = np.moveaxis(pixels, -1, 0)
    elif pixels.shape[0] <= 4:
        chw = pixels
    else:
        views = ",".join(str(pixels.shape[0] * k // 4) for k in (1, 2, 3))
        raise DataError(
            f"{where}: a stack of shape {pixels.shape}; to train on stacks, choose the slices to use as channels "
            f"(--views {views}); a model trained on 2-D scans takes one frame, not a stack"
        )
    if channels is not None and chw.shape[0] != channels:
        if chw.shape[0] == 1:
            chw = np.repeat(chw, channels, axis=0)
        elif chw.shape[0] == 3 and channels == 1:
            chw = np.tensordot(_LUMA, chw, axes=1)[None]
        else:
            raise DataError(f"{where}: has {chw.shape[0]} channels but the run uses {channels}")
    return np.ascontiguousarray(chw, dtype=np.float32)


def load_image(
    record: Record,
    views: list[int] | None = None,
    view_axis: int = 0,
    channels: int | None = None,
    dicom_window: tuple[float, float] | None = None,
    depth: int | None = None,
) -> np.ndarray:
    """One record's image as float32 (C, H, W)."""
    pixels, layout = read_pixels(record, dicom_window)
    return to_channels(pixels, layout, record, views, view_axis, channels, depth)


def is_colour(pixels: np.ndarray, layout: Layout) -> bool:
    """True for a colour image whose channels really differ (not grey stored as RGB): on average, or over a region
    (an ultrasound's colour Doppler box: 5% of the pixels of a grey scan)."""
    if layout != "hwc" or pixels.shape[-1] < 3:
        return False
    rgb = pixels[..., :3].astype(np.float32)
    top = max(float(np.abs(rgb).max()), 1e-6)
    spread = rgb.max(-1) - rgb.min(-1)
    return float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean()) > 0.02 * top or (spread > 0.1 * top).mean() >= 0.02


def content_hash(record: Record) -> str | None:
    """SHA-1 of the file bytes (or of the array slice, or of a sequence's tokens); None when the file is missing."""
    if record.tokens is not None:
        return hashlib.sha1(np.ascontiguousarray(record.tokens, dtype=np.int64).tobytes()).hexdigest()
    if record.index is not None:
        return hashlib.sha1(
            np.ascontiguousarray(load_array_file(record.source, record.key)[record.index]).tobytes()
        ).hexdigest()
    try:
        return hashlib.sha1(Path(record.source).read_bytes()).hexdigest()
    except OSError:
        return None
