"""The HTTP service on a real model: predictions equal meddx's, every bad upload answered with a reason, the domain
check, the thread pool and timeout, and the web page in real Chromium."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from meddx.serve import create_app

from conftest import need


@pytest.fixture(scope="module")
def client(package):
    with TestClient(create_app(package, max_upload_mb=1, timeout_s=60)) as c:
        yield c


def _post(client, data: bytes, name: str = "scan.png", **params):
    return client.post("/predict", params=params, files={"file": (name, data, "application/octet-stream")})


@pytest.mark.parametrize("backend", ["onnx", "pytorch"])
def test_predictions_equal_meddx_and_carry_decisions(datscan_run, package, scans, backend):
    expected = datscan_run.predict([str(s) for s in scans])["p_PD"].to_numpy()
    path = package if backend == "onnx" else datscan_run.path
    with TestClient(create_app(path, backend=backend)) as c:
        assert c.get("/health").json()["backend"] == backend
        for scan, p in zip(scans, expected):
            r = _post(c, scan.read_bytes())
            assert r.status_code == 200, r.text
            body = r.json()
            assert abs(body["probabilities"]["PD"] - p) < 1e-4
            assert body["decisions"]["PD"] == (body["probabilities"]["PD"] >= body["thresholds"]["PD"])
            assert body["domain"]["in_distribution"], body["domain"]


def test_model_card_health_docs(client, datscan_run):
    info = client.get("/model").json()
    assert info["labels"] == ["PD"] and info["backend"] == "onnx" and "ROC AUC" in info["card"]
    table = info["val_rates"]["labels"]["PD"]
    assert len(table["threshold"]) == 201 and table["sensitivity"][0] == 1.0 and table["specificity"][-1] >= 0.99
    assert info["operating_point"] == "Youden's J" and 0 < info["thresholds"]["PD"] < 1
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN; the schema stays
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    origin = datscan_run.data_info["origin"]
    assert "/" in origin and origin not in json.dumps(info)  # where the training data lived stays behind
    assert "datscan_spect_ppmi_2d" in info["card"]


def test_grad_cam_and_scan_images_in_the_response(client, scans):
    body = _post(client, scans[0].read_bytes(), cam=True, image=True).json()
    cam = Image.open(io.BytesIO(base64.b64decode(body["cam_png"])))
    scan = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    with Image.open(scans[0]) as original:
        assert cam.size == scan.size == original.size and cam.mode == "RGB"
    assert body["cam_label"] == "PD"
    assert _post(client, scans[0].read_bytes(), cam=True, label="nope").status_code == 400
    negative = _post(client, scans[0].read_bytes(), cam=True, label="hc").json()  # any case; the negative class
    assert negative["cam_label"] == "HC" and negative["cam_png"] != body["cam_png"]


def _dicom_without_pixels(path) -> bytes:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientID, ds.Modality = "anon", "NM"
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).get("PixelData") is None
    return path.read_bytes()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_each_bad_upload_gets_a_reason_never_a_500(client, scans, tmp_path):
    png = scans[0].read_bytes()
    cases = {
        "empty": (b"", 400, "empty upload"),
        "wrong type": (b"this is a text file, not a scan\n" * 4, 422, "unsupported file content"),
        "truncated png": (png[: len(png) // 3], 422, "truncated"),
        "too big": (png + b"\0" * (1024 * 1024), 413, "larger than the limit"),
        "dicom without pixels": (_dicom_without_pixels(tmp_path / "nopix.dcm"), 422, "no pixel data"),
        "npy of the wrong shape": (_npy(np.zeros((2, 3, 4, 5), np.float32)), 422, "expected (H, W)"),
        "npy with NaN": (_npy(np.full((48, 48), np.nan, np.float32)), 422, "NaN"),
        "jpeg header only": (b"\xff\xd8\xff\xe0" + b"\0" * 20, 422, "JPEG"),
    }
    for name, (data, status, reason) in cases.items():
        r = _post(client, data)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert reason in r.json()["detail"], (name, r.json())
        assert "/tmp" not in r.text and tempfile.gettempdir() not in r.text, (name, r.text)  # no server paths
    assert client.post("/predict").status_code == 422  # no file field at all: FastAPI's validation answer


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny compressed row of data (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_hand_made_abuse_gets_a_4xx_with_the_reason(client, scans):
    """One byte, a PNG claiming 100000 x 100000 pixels, a wrong field name, two files, NaN in an NPY, repeated
    files: each a 4xx naming the reason, never a 5xx."""
    png = scans[0].read_bytes()
    for name, data, status, reason in (
        ("one byte", b"\x89", 422, "unsupported file content"),
        ("bomb", _png_claiming(100_000, 100_000), 413, "image too large"),
        ("inf", _npy(np.full((48, 48), np.inf, np.float32)), 422, "NaN"),
    ):
        r = _post(client, data)
        assert r.status_code == status and reason in r.json()["detail"], (name, r.status_code, r.text)
    wrong = client.post("/predict", files={"image": ("scan.png", png, "image/png")})
    assert wrong.status_code == 422 and wrong.json()["detail"].startswith("no scan uploaded: send it as a multipart")
    cam = client.post("/predict?cam=maybe", files={"file": ("scan.png", png, "image/png")})
    assert cam.status_code == 422 and cam.json()["detail"].startswith("query cam: ")  # one line, where and what
    two = client.post("/predict", files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))])
    assert two.status_code in (200, 422), two.text  # FastAPI takes the first part of a repeated field: never a 5xx


def test_streamed_upload_without_length_is_cut_at_the_limit(client):
    def chunks():  # a multipart body streamed without Content-Length, so only counting can stop it
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]


def test_domain_check_flags_inverted_unscaled_and_other_modalities(client, scans, data_dir):
    with Image.open(scans[0]) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    inverted = io.BytesIO()
    Image.fromarray(((1.0 - grey) * 255).astype(np.uint8)).save(inverted, format="PNG")
    body = _post(client, inverted.getvalue()).json()
    assert not body["domain"]["in_distribution"] and any("inverted" in w for w in body["domain"]["warnings"])
    raw = _post(client, _npy(grey * 4095.0), name="raw.npy").json()  # the model standardises each scan (DaTscan):
    plain = _post(client, _npy(grey), name="plain.npy").json()  # another scale is the same input to it, so no alarm
    assert raw["domain"]["in_distribution"], raw["domain"]
    assert raw["probabilities"]["PD"] == pytest.approx(plain["probabilities"]["PD"], abs=1e-4)
    ct = need(data_dir, "dicom/CT_small.dcm").read_bytes()
    body = _post(client, ct, name="ct.dcm").json()
    assert not body["domain"]["in_distribution"] and body["domain"]["warnings"]
    assert 0 <= body["probabilities"]["PD"] <= 1  # the number still comes, with the warning beside it


def test_inference_runs_off_the_event_loop_and_times_out(package, scans, monkeypatch):
    app = create_app(package, timeout_s=1.0, threads=2)
    predictor = app.state.predictor
    started, release = threading.Event(), threading.Event()
    real = predictor.prepare

    def slow(data):
        started.set()
        release.wait(5)
        return real(data)

    monkeypatch.setattr(predictor, "prepare", slow)
    with TestClient(app) as c:
        result = {}
        worker = threading.Thread(target=lambda: result.update(r=_post(c, scans[0].read_bytes())))
        worker.start()
        assert started.wait(10)
        assert c.get("/health").status_code == 200  # answered while the prediction is still running
        assert "r" not in result
        worker.join(10)
        release.set()
        assert result["r"].status_code == 504 and "longer than 1 s" in result["r"].json()["detail"]


def test_a_multiclass_service_lists_no_thresholds_it_does_not_use():
    """`/predict` on a three-class package answered thresholds 0.5 and operating point argmax, with a decision true at
    p = 0.46, below its own listed threshold; a multi-class model lists none."""
    from types import SimpleNamespace

    from meddx.serve.predictor import Predictor

    shown = Predictor.shown_thresholds.fget
    assert shown(SimpleNamespace(task="multiclass", thresholds={"a": 0.5, "b": 0.5})) is None
    assert shown(SimpleNamespace(task="binary", thresholds={"a": 0.3})) == {"a": 0.3}


def test_a_model_that_does_not_beat_the_prior_says_so_on_every_answer(datscan_run, package, scans, tmp_path):
    """A chance-level model (AUC 0.61, 0.47-0.74) exported and served with nothing but a parity line: its caveats
    (from its own test split) are now in the package, the export's and the server's warnings, /model, every /predict
    answer and the page."""
    import shutil

    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.export.card import caveats

    y = (np.arange(60) % 2).astype(float)[:, None]
    p = np.random.default_rng(9).random((60, 1))  # ROC AUC 0.496 against these labels
    noise = evaluate_arrays(y, p, y, p, np.arange(60), np.array([0.5]), "binary", ["PD"], EvaluateConfig(bootstrap=200))
    said = caveats({**noise, "collapse": {"evaluation": noise["collapse"]}})
    assert len(said) == 1 and "does not beat the prior baseline" in said[0] and "PD" in said[0]
    assert json.loads((package / "labels.json").read_text())["caveats"] == []  # the DaTscan model beats it
    copy = tmp_path / "package"
    shutil.copytree(package, copy)
    labels = json.loads((copy / "labels.json").read_text())
    (copy / "labels.json").write_text(json.dumps({**labels, "caveats": said}))
    from meddx.export.card import UNCHECKED, model_caveats

    assert model_caveats(copy) == said  # what `meddx predict` warns of, from a package or a run
    assert model_caveats(datscan_run.path) == caveats(datscan_run.metrics("test")) == []
    older = tmp_path / "older"
    shutil.copytree(package, older)
    (older / "labels.json").write_text(json.dumps({k: v for k, v in labels.items() if k != "caveats"}))
    assert model_caveats(older) == [UNCHECKED]  # a package from before caveats: not the same as "none"
    from meddx.errors import MeddxWarning
    from meddx.serve.batch import predict_files

    with pytest.warns(MeddxWarning, match="does not beat the prior"):  # a notebook user sees them too
        assert predict_files(copy, [scans[0]]).attrs["model_caveats"] == said
    with TestClient(create_app(copy)) as c:
        assert c.get("/model").json()["caveats"] == said
        assert _post(c, scans[0].read_bytes()).json()["model_caveats"] == said
        assert 'id="caveats"' in c.get("/").text
    run_copy = tmp_path / "run"  # meddx.predict on records (and on report files) warned of nothing
    shutil.copytree(datscan_run.path, run_copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "logs"))
    (run_copy / "metrics.json").write_text(json.dumps({**noise, "collapse": {"evaluation": noise["collapse"]}}))
    import meddx

    with pytest.warns(MeddxWarning, match="does not beat the prior"):
        assert meddx.predict(run_copy, datscan_run.records("test")[:2]).attrs["model_caveats"] == said
