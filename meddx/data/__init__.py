"""Data: readers returning records, image decoding, splits and the leakage check, explore."""

from meddx.data.leakage import LeakageReport, check_leakage, enforce_no_leakage
from meddx.data.manifest import read_csv_manifest
from meddx.data.readers import load_pneumoniamnist, read_dataset, read_folder, read_medmnist
from meddx.data.records import DataSet, Record
from meddx.data.split import assign_splits

__all__ = [
    "DataSet",
    "LeakageReport",
    "Record",
    "assign_splits",
    "check_leakage",
    "enforce_no_leakage",
    "load_pneumoniamnist",
    "read_csv_manifest",
    "read_dataset",
    "read_folder",
    "read_medmnist",
]
