"""The class-folder layout's walk: every image under each class folder with its patient and subfolders, and what
was left out (other files, images outside any class folder, mask or linked folders), named in notes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from meddx.data.images import READABLE_EXTENSIONS
from meddx.data.manifest import patient_from_name
from meddx.errors import DataError

MASK_FOLDER = re.compile(  # `masks`, `Mask_PNG`, `segmentation_masks`, `gt`: not scans of the class
    r"(^|[^a-z])(masks?|labels?|seg|segmentations?|annotations?|gt|ground[ _-]?truth)([^a-z]|$)", re.IGNORECASE
)


def _class_files(cdir: Path, skipped: list[str]) -> list[Path]:
    """Every file under a class folder and its subfolders; hidden ones left out, and segmentation-mask folders
    (`masks/`, `labels/`, ...) and linked folders (a loop would never end) left out and added to `skipped`."""
    found = []
    for here, dirs, files in os.walk(cdir):
        left_out = [d for d in dirs if MASK_FOLDER.search(d) or (Path(here) / d).is_symlink()]
        skipped += [str(Path(here) / d) for d in left_out]
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in left_out]
        found += [Path(here) / f for f in files if not f.startswith(".")]
    return sorted(found)


def folder_entries(split_dirs: list, regex: re.Pattern | None) -> tuple[list, list, list, list, list]:
    """(split, class, file, patient, its subfolders under the class) per image, and the ignored, unmatched and broken
    files and the mask folders left out."""
    entries, ignored, unmatched, broken, masks = [], [], [], [], []
    for split, sdir in split_dirs:
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            before = len(entries)
            for f in _class_files(cdir, masks):
                if f.is_symlink() and not f.exists():  # a broken link or a loop: a missing scan, not a skipped one
                    broken.append(str(f))
                if not f.is_file():
                    continue
                if f.suffix.lower() not in READABLE_EXTENSIONS:
                    ignored.append(str(f))
                    continue
                patient = patient_from_name(f.name, regex)
                if patient is None:
                    unmatched.append(str(f))
                entries.append((split, cdir.name, f, patient, f.relative_to(cdir).parts[:-1]))
            if len(entries) == before:
                raise DataError(f"{cdir}: a class folder with no images; add its images or remove the folder")
    return entries, ignored, unmatched, broken, masks


def left_out_notes(root: Path, split_dirs: list, ignored: list[str], masks: list[str]) -> list[str]:
    """What the reader left out, named: images outside any class folder (beside the split folders too), other files
    (a table beside the class folders is not read: they give the labels), mask or linked folders."""
    tops = [f for d in sorted({root, *(d for _, d in split_dirs)}) for f in sorted(d.iterdir()) if f.is_file()]
    loose = [str(f) for f in tops if _readable(f)]
    tables = [str(f) for f in tops if f.suffix.lower() in (".csv", ".tsv")]
    ignored = [
        str(f) for f in tops if not f.name.startswith(".") and not _readable(f) and str(f) not in tables
    ] + ignored
    notes = [_ignored_note(f"{len(loose)} image(s) outside any class folder ignored", loose)] if loose else []
    unread = f"{len(tables)} table(s) not read: the class folders give the labels"
    notes += [_ignored_note(unread, tables)] if tables else []
    notes += [_ignored_note(f"{len(ignored)} non-image file(s) ignored", ignored)] if ignored else []
    return notes + ([f"{len(masks)} segmentation-mask or linked folder(s) left out, e.g. {masks[0]}"] if masks else [])


def _readable(f: Path) -> bool:
    return not f.name.startswith(".") and f.suffix.lower() in READABLE_EXTENSIONS


def _ignored_note(what: str, files: list[str]) -> str:
    """`what`, then the files: all of them up to five, else five of them."""
    return f"{what}: {', '.join(files[:5])}" + (f", ... and {len(files) - 5} more" if len(files) > 5 else "")
