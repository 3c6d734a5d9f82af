"""Writes that are complete or absent: every file goes to a temporary name in its folder and is renamed over the
target (`os.replace` is atomic on one file system), so a killed process or a full disk never leaves half a file
that a later step would read as whole. A folder (a package) is built aside and swapped in the same way."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from meddx.errors import ConfigError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: temporary files are made 0600 and folders 0700; the outputs get the usual modes


class UnwritableTarget(ConfigError, OSError):
    """An output path that cannot be written (its folder missing or a file, a folder in its place, no permission):
    one line naming it; still an OSError to code that falls back when a write fails."""


def _check_target(path: Path) -> None:
    """Refuse, naming `path` (not the temporary file), what would fail only after the data was written, or as a
    traceback naming the temporary file."""
    if path.is_dir():
        raise UnwritableTarget(f"{path}: a folder; give the name of a file to write")
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise UnwritableTarget(f"{path}: cannot write it, {path.parent} {what}")


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds and removed when it fails."""
    path = Path(path)
    _check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except PermissionError as e:
        raise UnwritableTarget(f"{path}: cannot write it ({e.strerror})") from None
    os.close(fd)
    with suppress(OSError):  # as open() would make it (a package is read by other accounts); exFAT may refuse
        os.chmod(tmp, 0o666 & ~UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """`Path.write_text`, complete or absent."""
    with staged_file(Path(path)) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`Path.write_bytes`, complete or absent."""
    with staged_file(Path(path)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """`torch.save` (a state dict: loaded later with weights_only=True), complete or absent."""
    import torch

    with staged_file(Path(path)) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def write_frame(frame: Any, path: str | Path, **to_csv: Any) -> Path:
    """`DataFrame.to_csv`, complete or absent."""
    with staged_file(Path(path)) as tmp:
        frame.to_csv(tmp, **to_csv)
    return Path(path)


def _check_folder_target(path: Path) -> None:
    """Refuse, naming it, a folder target that is a file (the swap replaced the file) or lies under one."""
    if path.exists() and not path.is_dir():
        raise UnwritableTarget(f"{path}: a file, not a folder; give a new or existing folder (the file is left as is)")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UnwritableTarget(f"{path}: cannot make the folder, {above} is a file")


@contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """A new folder built beside `path` and swapped in when the block succeeds (the old one removed); when the block
    fails, the half-built folder is removed and the old `path`, if any, is left as it was."""
    path = Path(path)
    _check_folder_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        with suppress(OSError):
            tmp.chmod(0o777 & ~UMASK)
    except OSError as e:  # no permission, a read-only disk
        raise UnwritableTarget(f"{path}: cannot make the folder ({e.strerror})") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
