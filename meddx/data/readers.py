"""Readers: CSV manifests, class folders and MedMNIST .npz files, all returning a DataSet of Records."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from meddx.config import DataConfig
from meddx.data.columns import image_column as find_image_column
from meddx.data.folder_walk import folder_entries, left_out_notes
from meddx.data.manifest import SPLIT_ALIASES, compile_patient_regex, read_csv_manifest, read_table
from meddx.data.medmnist import read_medmnist
from meddx.data.patients import SUBFOLDERS, assign_guessed_patients
from meddx.data.records import DataSet, Record, class_labels, merge_classes, normalise_class_names
from meddx.data.reports import is_tianchi_file, read_tianchi
from meddx.errors import DataError, NotInData, not_found

BUNDLED = {"pneumoniamnist": ("pneumoniamnist.npz", ["normal", "pneumonia"])}


def bundled_path(name: str) -> Path:
    """Path of a data set shipped inside meddx (e.g. 'pneumoniamnist')."""
    return Path(str(resources.files("meddx.datasets").joinpath(BUNDLED[name][0])))


def load_pneumoniamnist() -> DataSet:
    """The bundled PneumoniaMNIST (CC BY 4.0, MedMNIST v2) with its official train/val/test splits."""
    return read_medmnist(bundled_path("pneumoniamnist"), class_names=BUNDLED["pneumoniamnist"][1])


def _deeper_classes(root: Path, files: list[Path]) -> str | None:
    """One line when every image lies under one chain of folders that then splits (`data/images/{HC,PD}`): the
    class folders are deeper than the folder given."""
    folders = [f.relative_to(root).parts[:-1] for f in files]
    common = []
    for parts in zip(*folders):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if not common or any(len(f) <= len(common) for f in folders):
        return None
    below = sorted({f[len(common)] for f in folders})
    return (
        f"{root}: one class folder only ({common[0]}): every image is under {'/'.join(common)}/; if its "
        f"{len(below)} subfolders ({', '.join(below[:5])}{', ...' if len(below) > 5 else ''}) are the classes, "
        f"point --data at {root.joinpath(*common)}"
    )


def read_folder(
    path: str | Path,
    patient_regex: str | None = None,
    positive_class: str | None = None,
    guess_patients: bool = True,
    classes: list[str] | None = None,
) -> DataSet:
    """`class/*.png`, `class/patient/*.png` or either under `split/`; the patient id comes from a regex on the file
    name, without one from the patient subfolders or names of the form <patient>_<number> (when `guess_patients`)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(not_found("folder", root))
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DataError(f"{root}: no class folders inside")
    if all(p.name.lower() in SPLIT_ALIASES for p in subdirs):
        split_dirs = [(SPLIT_ALIASES[p.name.lower()], p) for p in subdirs]
    else:
        split_dirs = [(None, root)]
    regex = compile_patient_regex(patient_regex)
    entries, ignored, unmatched, broken, masks = folder_entries(split_dirs, regex)
    if broken:
        raise DataError(f"{root}: {len(broken)} broken link(s) (missing target or a loop), e.g. {broken[0]}")
    if not entries:
        raise DataError(f"{root}: no image files found in its class folders")
    if unmatched:
        message = f"{root}: patient_regex '{patient_regex}' does not match {len(unmatched)} file name(s), e.g. "
        message += ", ".join(unmatched[:5])
        n, k = len(entries), len(entries) - len(unmatched)
        matched = f"{k} of the {n}" if k else f"none of the {n}"
        raise NotInData(message, "patient_regex", f"matches {matched} file names (not e.g. {unmatched[0]})")
    if len({e[1] for e in entries}) == 1 and (deeper := _deeper_classes(root, [e[2] for e in entries])):
        raise DataError(deeper)
    canonical, class_notes = normalise_class_names([e[1] for e in entries])
    names = [canonical[e[1]] for e in entries]
    files = [str(e[2]) for e in entries]
    label_names, task, vec = class_labels(names, positive_class, str(root), class_notes, files, classes)
    records = [
        Record(str(f.relative_to(root)), str(patient), str(f), vec[canonical[c]], split=split,
               row=str(f.relative_to(root)))
        for split, c, f, patient, _ in entries
    ]  # fmt: skip
    notes = left_out_notes(root, split_dirs, ignored, masks) + class_notes
    guessed, nested = None, sum(bool(e[4]) for e in entries)
    if regex is None:
        guessed, note = assign_guessed_patients(records, str(root), [e[4] for e in entries], guess_patients)
        notes.append(note)
    if nested and guessed != SUBFOLDERS:
        notes.append(f"{nested} image(s) read from subfolders of the class folders")
    return DataSet(
        records,
        label_names,
        task,
        origin=str(root),
        notes=notes,
        patients_guessed=guessed,
        classes=merge_classes(list(vec), classes),
    )


def manifest_path(path: str | dict) -> str | dict | None:
    """The CSV(s) a data path is read by: itself, a {split: csv} mapping, or a folder's one manifest; else None."""
    if isinstance(path, dict):  # split CSVs (not one split of an .npz: `test=file.npz`)
        return path if all(str(v).lower().endswith((".csv", ".tsv")) for v in path.values()) else None
    if str(path).lower().endswith((".csv", ".tsv")):
        return path
    manifest = _manifest_inside(Path(path)) if Path(path).is_dir() else None
    return str(manifest) if manifest else None


def _manifest_inside(folder: Path) -> Path | None:
    """The one CSV at the top of a folder holding at most one subfolder, of files (`images/*.png` beside
    `labels.csv`), which no class-folder layout is."""
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    tables = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv")]
    if len(tables) != 1 or len(subfolders) > 1:
        return None
    if subfolders and (subfolders[0].name.lower() in SPLIT_ALIASES or not _holds_files(subfolders[0])):
        return None  # `test/` or `images/{HC,PD}`: class folders, the CSV beside them is not their manifest
    return tables[0]


def _root_of(manifest: Path, image_column: str | None) -> str | None:
    """The folder beside a manifest that its bare file names (`x0.png`) are in (`images/`), when they are not beside
    it; None to keep the manifest's own folder."""
    frame = read_table(manifest).head(20)
    column = find_image_column(frame, image_column, str(manifest))[0]
    names = [v.strip() for v in frame[column] if v.strip()]
    if not names or any((manifest.parent / n).exists() for n in names):
        return None
    inside = [p for p in manifest.parent.iterdir() if p.is_dir() and all((p / n).exists() for n in names)]
    return str(inside[0]) if len(inside) == 1 else None


def _holds_files(folder: Path) -> bool:
    return any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def _npz_split(cfg: DataConfig, path: dict) -> DataSet:
    """`--data test=file.npz`: one official split of an .npz file (it holds its own splits, so one file only)."""
    (alias, file), *more = path.items()
    split = SPLIT_ALIASES.get(alias.lower(), alias)
    if more or split not in ("train", "val", "test"):
        given = " ".join(f"{k}={v}" for k, v in path.items())
        raise DataError(f"{given}: an .npz holds its own splits; give the file, or one of train=, val=, test= FILE.npz")
    ds = read_dataset(cfg.model_copy(update={"path": str(file), "format": "medmnist"}))
    ds.records = [r for r in ds.records if r.split == split]
    if not ds.records:
        raise DataError(f"{file}: no {split} split ({split}_images)")
    ds.notes.append(f"only its {split} split read ({len(ds.records)} samples)")
    return ds


def _folder_splits(cfg: DataConfig, path: dict[str, str]) -> DataSet:
    """{split: folder of class subfolders} (`--data train=A/ --data test=B/`): each folder's images are that split,
    their ids prefixed by it (`test/NORMAL/x.png`); the folders must hold the same classes."""
    folders, parts = {}, {}
    for split, folder in path.items():
        name = SPLIT_ALIASES.get(split.lower())
        if name is None or name in parts:
            raise DataError(f"{split}={folder}: split names are train, val (or valid) and test, each once")
        folders[name] = folder
        parts[name] = read_folder(folder, cfg.patient_regex, cfg.positive_class, cfg.guess_patients, cfg.classes)
    (first, ds0), *rest = parts.items()
    for name, ds in rest:
        if (ds.label_names, ds.task) != (ds0.label_names, ds0.task):
            raise DataError(
                f"{folders[name]}: labels {ds.label_names} ({ds.task}) differ from those of {folders[first]} "
                f"{ds0.label_names} ({ds0.task}); every split needs the same classes"
            )
    for name, ds in parts.items():
        for r in ds.records:
            own = r.patient_id == r.id and not ds.patients_guessed  # each image its own patient: its new id too
            r.split, r.id = name, f"{name}/{r.id}"
            r.patient_id = r.id if own else r.patient_id
    notes = [f"{name}: {n}" for name, ds in parts.items() for n in ds.notes]
    records = [r for ds in parts.values() for r in ds.records]
    classes = merge_classes([c for ds in parts.values() for c in ds.classes], None)
    return DataSet(
        records, ds0.label_names, ds0.task, ", ".join(folders.values()), notes, ds0.patients_guessed, classes
    )


def read_dataset(cfg: DataConfig, check_files: bool = True) -> DataSet:
    """Dispatch on cfg.format (or guess from the path) and return the DataSet."""
    path = cfg.path
    if isinstance(path, str) and path in BUNDLED:
        ds = read_medmnist(bundled_path(path), cfg.label_names or BUNDLED[path][1], cfg.positive_class)
        ds.origin = f"bundled:{path}"
        return ds
    if isinstance(path, dict):  # `test=pneumoniamnist`: one split of a bundled set
        path = {k: str(bundled_path(v)) if v in BUNDLED else v for k, v in path.items()}
    if isinstance(path, dict) and any(str(v).lower().endswith(".npz") for v in path.values()):
        return _npz_split(cfg, path)
    if isinstance(path, dict) and all(Path(v).is_dir() for v in path.values()):
        return _folder_splits(cfg, path)
    fmt = cfg.format
    if fmt == "auto" and isinstance(path, str) and Path(path).is_file():
        fmt = "tianchi" if is_tianchi_file(path) else fmt
    if fmt == "tianchi":
        if not isinstance(path, str):
            raise DataError("data.format tianchi reads one labelled file; put test files in data.vocab_files")
        return read_tianchi(path, cfg.label_set)
    if fmt == "auto":
        if isinstance(path, dict) or str(path).lower().endswith((".csv", ".tsv")):
            fmt = "csv"
        elif str(path).lower().endswith(".npz"):
            fmt = "medmnist"
        elif Path(path).is_dir() and (manifest := _manifest_inside(Path(path))):
            root = cfg.root or _root_of(manifest, cfg.image_column)
            ds = read_dataset(
                cfg.model_copy(update={"path": str(manifest), "format": "csv", "root": root}), check_files
            )
            ds.notes.append(f"{path}: read as its manifest {manifest.name} (one CSV beside at most one folder)")
            return ds
        elif Path(path).is_dir():
            fmt = "folder"
        elif not Path(path).exists():
            raise DataError(not_found("data path", path))
        else:
            raise DataError(f"{path}: cannot tell the format; set data.format to csv, folder or medmnist")
    if fmt == "medmnist":
        return read_medmnist(path, class_names=cfg.label_names, positive_class=cfg.positive_class)
    if fmt == "folder":
        return read_folder(path, cfg.patient_regex, cfg.positive_class, cfg.guess_patients, cfg.classes)
    return read_csv_manifest(
        path,
        cfg.root,
        cfg.image_column,
        cfg.patient_column,
        cfg.label_columns,
        cfg.label_column,
        cfg.positive_class,
        check_files,
        cfg.patient_regex,
        cfg.uncertain_labels,
        allow_outside_root=cfg.allow_outside_root,
        guess_patients=cfg.guess_patients,
        classes=cfg.classes,
    )
