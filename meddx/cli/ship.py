"""Commands that ship a run: predict, export, explain, serve."""

import json
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from meddx.atomic import write_frame, write_text
from meddx.errors import MeddxError, MeddxWarning


def predict(
    run: Annotated[
        Path, typer.Argument(help="Run folder, model package, or `meddx cv` folder (its fold ensemble, <cv>/ensemble).")
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Scans (PNG, JPEG, DICOM, NPY), folders, CSV manifests; `|,|` files for a token run."),
    ],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write a CSV here (JSON with --json or a .json name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON records instead of a table or CSV.")] = False,
    root: Annotated[
        Optional[Path], typer.Option(help="Folder a CSV's relative image paths start from (default: the CSV's own).")
    ] = None,
) -> None:
    """Per scan: probabilities, the decision at the run's operating point and the input-domain check."""
    from meddx.api import predict as api_predict

    with warnings.catch_warnings():  # the caveats are printed below as WARNING lines, not as Python's warnings
        warnings.simplefilter("ignore", MeddxWarning)
        df = api_predict(run, [str(f) for f in inputs], root)
    failed = int(df["error"].notna().sum()) if "error" in df else 0
    records = df.to_json(orient="records", indent=2).replace("\\/", "/")  # pandas writes / as \/
    if output and (as_json or output.suffix.lower() == ".json"):
        write_text(output, records + "\n")
        typer.echo(f"wrote {output} ({len(df)} records)")
    elif output:
        write_frame(df, output, index=False)
        typer.echo(f"wrote {output} ({len(df)} rows)")
    elif as_json:
        typer.echo(records)
    else:
        from meddx.serve.batch import short_table

        typer.echo(short_table(df).to_string(index=False))
    from meddx.export.card import model_caveats

    for caveat in model_caveats(run):  # what the model's own test split says against trusting these numbers
        typer.echo(f"WARNING: {caveat}", err=True)
    if failed:
        typer.echo(f"meddx: {failed} of {len(df)} file(s) could not be read (their rows name why)", err=True)
        raise typer.Exit(1)


def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Package folder (default RUN/package).")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed difference of probabilities from PyTorch.")] = 1e-4,
) -> None:
    """Model package (model file, preprocessing, labels, operating point, card) checked for parity on real images."""
    from meddx.export import export_run
    from meddx.export.package import FILES

    out = export_run(run, fmt, output, tolerance)  # type: ignore[arg-type]
    parity = json.loads((out / "parity.json").read_text())
    typer.echo(
        f"wrote {out} ({fmt}); parity on {parity['images']} real images: max |diff| {parity['max_abs_diff']:.2e} "
        f"<= {tolerance:g}"
    )
    if parity.get("decisions_differ"):  # probabilities within the tolerance, on either side of the threshold
        typer.echo(f"note: {parity['decisions_differ']} of {parity['images']} images decided otherwise than by PyTorch "
                   "(probabilities this close to the operating point: read them as borderline)", err=True)  # fmt: skip
    for other, name in FILES.items():
        if other != fmt and (out / name).is_file():
            typer.echo(f"kept {name} of the earlier export (the same weights): the package holds both formats")
    for caveat in json.loads((out / "labels.json").read_text()).get("caveats", []):
        typer.echo(f"WARNING: {caveat} (in the package: the service shows it on every answer)", err=True)


def explain(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    scans: Annotated[
        Optional[list[Path]], typer.Argument(help="Scan files (PNG, JPEG, DICOM, NPY); omit with --gallery.")
    ] = None,
    label: Annotated[
        Optional[str],
        typer.Option(
            help="Class to explain, case ignored (a binary run's negative class too; default: a binary run's "
            "positive class, else the most probable label; --gallery: a page per label)."
        ),
    ] = None,
    layer: Annotated[
        Optional[str], typer.Option(help="Target layer by name (default: the last spatial feature map).")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="PNG (one scan) or folder (several / gallery).")
    ] = None,
    gallery: Annotated[
        bool, typer.Option("--gallery", help="HTML page of top true/false positives and false negatives.")
    ] = False,
    split: Annotated[str, typer.Option(help="Split for --gallery.")] = "test",
    k: Annotated[int, typer.Option("-k", help="Cases per group for --gallery.")] = 6,
    legend: Annotated[
        bool,
        typer.Option(
            help="Enlarge each overlay and name the class, its probability and the colours below it "
            "(--no-legend: the scan's own size, pixel for pixel)."
        ),  # fmt: skip
    ] = True,
) -> None:
    """Grad-CAM overlays on the scans (in grey, stretched to their own range; heat map blended), or a gallery."""
    from meddx.explain import gallery as make_gallery
    from meddx.explain.gradcam import Explainer, explain_scan
    from meddx.run import Run

    if gallery:
        typer.echo(f"wrote {make_gallery(run, split, label, k, output, layer)}")
        return
    if not scans:
        raise MeddxError("give one or more scan files, or --gallery")
    ran = Run(run)
    explainer, said = Explainer.from_run(ran, layer), set()  # built once for every scan
    for scan in scans:
        out = (
            output
            if output and len(scans) == 1 and output.suffix.lower() == ".png"
            else (output / f"{scan.stem}-{label or 'map'}.png" if output else None)
        )
        done = explain_scan(ran, explainer, scan, label, out, legend)
        typer.echo(f"{scan}: p({done['label']}) = {done['probability']:.4f} -> {done['path']}")
        for note in [n for n in done["notes"] if n not in said]:
            typer.echo(f"note: {note}", err=True)
            if note.startswith("a coarse map"):  # the same for every scan: said once
                said.add(note)
    _warn_domain(ran, scans)


def _warn_domain(run, scans: list[Path]) -> None:
    """The input-domain check of the explained scans, as `predict` checks them: a WARNING for each one outside, and
    the model's caveats (a collapsed model's maps explain one output for every scan)."""
    from meddx.data.records import file_record
    from meddx.export.card import model_caveats
    from meddx.export.new_data import new_data_domain

    for caveat in model_caveats(run.path):
        typer.echo(f"WARNING: {caveat}", err=True)
    domain = new_data_domain(run, [file_record(s) for s in scans], limit=len(scans))
    for flagged in domain.get("flagged", []):
        typer.echo(f"WARNING: outside the training scans' input domain: {flagged}; the map and p say little", err=True)
    if domain["outside"] > len(domain.get("flagged", [])):
        typer.echo(f"WARNING: {domain['outside']} of {domain['checked']} scans outside the input domain", err=True)
    if domain.get("skipped"):
        typer.echo(f"note: input-domain check skipped: {domain['skipped']}", err=True)


def serve(
    path: Annotated[Path, typer.Argument(help="Model package (meddx export) or run folder.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: Annotated[str, typer.Option(help="auto (ONNX when the package has it), onnx or pytorch.")] = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Uploads above this get 413.")] = 20.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before a prediction answers 504.")] = 30.0,
    read_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a client has to send its whole request; slower ones get 408.")
    ] = 30.0,
    threads: Annotated[
        int, typer.Option(help="Request worker threads (decoding and inference); ONNX Runtime gets cores / threads.")
    ] = 2,
    batching: Annotated[
        bool, typer.Option("--batching/--no-batching", help="Run concurrent requests' model calls as one batch.")
    ] = True,
    max_batch: Annotated[int, typer.Option(help="Most requests in one model call (1: no batching).")] = 32,
    batch_wait_ms: Annotated[
        float, typer.Option(help="Milliseconds a batch waits for more requests after its first.")
    ] = 5.0,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="MEDDX_TOKEN", help="Require `Authorization: Bearer TOKEN` on /predict and /model."),
    ] = None,
) -> None:
    """HTTP service: POST /predict, GET /health, GET /model, web page at /, schema at /openapi.json."""
    from meddx.serve import serve as run_service

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.echo(f"meddx: warning: listening on {host} without --token: anyone who reaches it can use it", err=True)
    run_service(path, host, port, read_timeout, backend=backend, max_upload_mb=max_upload_mb, timeout_s=timeout,
                threads=threads, token=token, max_batch=max_batch if batching else 1,
                batch_wait_ms=batch_wait_ms)  # fmt: skip


def register(app: typer.Typer) -> None:
    for command in (predict, export, explain, serve):
        app.command()(command)
