"""Export to ONNX and TorchScript with the parity check on real test images; onnxruntime + numpy alone reproduce it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from meddx.export import ExportError, export_run
from meddx.export.package import check_images

from conftest import run_cli


@pytest.fixture(scope="module")
def small_run(datscan_run):
    return datscan_run


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_on_real_images(small_run, fmt, tmp_path):
    out = export_run(small_run, fmt, tmp_path / fmt)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["images"] > 10
    assert parity["decisions_differ"] == 0  # no image decided otherwise at the operating point
    for f in (
        "preprocess.json",
        "labels.json",
        "thresholds.json",
        "card.md",
        "model.onnx" if fmt == "onnx" else "model.ts",
    ):
        assert (out / f).is_file(), f
    from meddx.export.card import caveats

    labels = {"labels": ["PD"], "task": "binary", "negative": "HC", "run": small_run.path.name}
    assert json.loads((out / "labels.json").read_text()) == {**labels, "caveats": caveats(small_run.metrics("test"))}
    assert "ROC AUC" in (out / "card.md").read_text()


def test_exporting_one_format_keeps_the_other_of_the_same_weights(small_run, tmp_path):
    """`meddx export --format torchscript` after the ONNX export replaced model.onnx (the service then fell back to
    PyTorch); both now stay, unless the weights changed between the two exports."""
    out = export_run(small_run, "onnx", tmp_path / "pkg")
    export_run(small_run, "torchscript", out)
    assert (out / "model.onnx").is_file() and (out / "model.ts").is_file()
    assert json.loads((out / "parity.json").read_text())["format"] == "torchscript"
    parity = json.loads((out / "parity-onnx.json").read_text())
    assert (
        parity["format"] == "onnx"
        and parity["weights_sha1"] == json.loads((out / "parity-torchscript.json").read_text())["weights_sha1"]
    )
    from meddx.errors import ConfigError
    from meddx.serve.predictor import Predictor

    assert Predictor(out).backend == "onnx"  # served by the ONNX file, checked by its own parity file
    failed = parity | {"passed": False, "max_abs_diff": 0.5}
    (out / "parity-onnx.json").write_text(json.dumps(failed))  # parity.json (TorchScript's) passed: not enough
    with pytest.raises(ConfigError, match="its parity check failed"):
        Predictor(out)
    (out / "parity-onnx.json").write_text(json.dumps(parity))
    stale = json.loads((out / "parity-onnx.json").read_text()) | {"weights_sha1": "retrained since"}
    (out / "parity-onnx.json").write_text(json.dumps(stale))
    export_run(small_run, "torchscript", out)
    assert not (out / "model.onnx").exists() and (out / "model.ts").is_file()  # another model's file: not kept


def test_the_cards_code_alone_reproduces_meddx(small_run, data_dir, tmp_path):
    """The model card's code, run in a process where torch and meddx cannot be imported, gives meddx's probabilities
    to 1e-4 (it was 0.0036 off while the antialiased resize was not written down)."""
    out = export_run(small_run, "onnx", tmp_path / "pkg")
    card = (out / "card.md").read_text()
    code = card.split("## Running the file without meddx", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    files = sorted((data_dir / "datscan_spect_ppmi_2d/train/PD").iterdir())[:3]
    files += sorted((data_dir / "chest_xray_pneumonia_224/train/NORMAL").iterdir())[:2]  # RGB-stored grey, 224 px
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None; sys.modules['meddx'] = None  # neither may be imported\n"
        + code
        + f"\nprint(json.dumps(predict({[str(f) for f in files]!r}).tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    p = np.array(json.loads(proc.stdout))
    expected = small_run.predict([str(f) for f in files])["p_PD"].to_numpy()
    np.testing.assert_allclose(p[:, 0], expected, atol=1e-4)


def test_parity_failure_is_an_error(small_run, tmp_path):
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_run(small_run, "onnx", tmp_path / "strict", tolerance=-1.0)
    assert len(check_images(small_run)) > 10


def test_cli_export(small_run, tmp_path):
    proc = run_cli("export", str(small_run.path), "--format", "torchscript", "-o", str(tmp_path / "ts"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parity on" in proc.stdout and (tmp_path / "ts" / "model.ts").is_file()


def test_export_onto_a_file_is_one_line_and_leaves_the_file(small_run, tmp_path):
    """`-o` naming an existing file was replaced by the package folder (the file moved to a hidden name)."""
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    for output, needle in ((target, f"{target}: a file, not a folder"), (target / "pkg", f"{target} is a file")):
        proc = run_cli("export", str(small_run.path), "-o", str(output))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        message = proc.stderr[proc.stderr.index("meddx: error:") :].strip()
        assert needle in message and "\n" not in message, message
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_card_lists_evaluations_on_other_data(small_run, data_dir, tmp_path):
    """The model card gave the run's own test figures only, though the run had been evaluated on data from elsewhere
    (`meddx evaluate --data`), the figures a reader most needs; a set of the run's own test images is marked so."""
    import shutil

    import meddx

    tested = small_run.predictions("test")["id"]
    for i in [*tested[tested.str.contains("/HC/")][:4], *tested[tested.str.contains("/PD/")][:4]]:
        (tmp_path / "site" / i.split("/")[-2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "datscan_spect_ppmi_2d" / i, tmp_path / "site" / i.split("/")[-2])
    meddx.evaluate(small_run.path, "card-site", data={"path": str(tmp_path / "site")}, bootstrap=0)
    headline = meddx.evaluate(small_run.path, "card-site", data={"path": str(tmp_path / "site")})
    meddx.evaluate(small_run.path, "card-site", data={"path": str(tmp_path / "site")}, operating_point="fixed=0.999")
    card = (export_run(small_run, "onnx", tmp_path / "pkg") / "card.md").read_text()
    sens = headline["model"]["per_label"]["PD"]["sensitivity"]["value"]  # the what-if at 0.999 came later: not it
    section = card.split("## Performance on other data (`meddx evaluate --data`; operating point")[1].split("## ")[0]
    assert "- card-site (`site`, 8 samples), PD: ROC AUC " in section and str(tmp_path) not in card
    assert f"sensitivity {sens:.3f}" in section
    assert "(**not external**: all 8 samples evaluated here are the run's own test images" in section  # they are


def test_a_model_never_scored_on_held_out_data_is_not_called_fine(tmp_path):
    """A `meddx cv` fold ensemble has no test split: its package said caveats [] ('checked, none') for folds that had
    all collapsed. Its caveats now come from the out-of-fold predictions; a run never evaluated says it was not."""
    import pandas as pd

    from meddx.export.card import NOT_EVALUATED, model_caveats

    cv_dir = tmp_path / "cv"
    (cv_dir / "ensemble").mkdir(parents=True)
    (cv_dir / "ensemble" / "config.yaml").write_text("{}\n")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.where(np.arange(60) < 30, 0.31, np.clip(0.2 + 0.6 * y + rng.normal(0, 0.05, 60), 0, 1))  # fold0 flat
    frame = pd.DataFrame({"id": map(str, range(60)), "patient_id": map(str, range(60)), "PD": y, "p_PD": p,
                          "fold": np.arange(60) >= 30, "prior_PD": 0.5})  # fmt: skip
    frame.astype({"fold": int}).to_csv(cv_dir / "oof.csv", index=False)
    cv = {"labels": 1, "task": "binary", "model": {"mlogloss": 0.45}, "baselines": {"prior": {"mlogloss": 0.69}}}
    (cv_dir / "cv.json").write_text(json.dumps(cv))
    said = model_caveats(cv_dir / "ensemble")
    assert len(said) == 1 and said[0].startswith("fold0's model gave (nearly) the same output for every scan")
    cv["model"]["mlogloss"] = 0.70  # out of fold no better than the class shares
    (cv_dir / "cv.json").write_text(json.dumps(cv))
    assert "no better than the prior's 0.6900" in model_caveats(cv_dir / "ensemble")[-1]
    noise = rng.integers(0, 2, 60)  # two labels, the second noise: the overall loss beat the prior and [] was said
    frame = frame.assign(PD=y, p_PD=np.clip(0.2 + 0.6 * y + rng.normal(0, 0.05, 60), 0, 1), fold=np.arange(60) >= 30,
                         B=noise, p_B=rng.random(60), prior_B=0.5)  # fmt: skip
    frame.astype({"fold": int}).to_csv(cv_dir / "oof.csv", index=False)
    (cv_dir / "cv.json").write_text(json.dumps({**cv, "labels": 2, "model": {"mlogloss": 0.45}}))
    said = model_caveats(cv_dir / "ensemble")
    assert len(said) == 1 and "does no better than the prior (a guess from the class shares) for B:" in said[0]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.yaml").write_text("{}\n")
    assert model_caveats(tmp_path / "plain") == [NOT_EVALUATED]
