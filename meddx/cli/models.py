"""Commands on models: models, model-info, pretrain."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from meddx.cli.options import SetOpt, depth_value, given, set_overrides


def models(all_timm: Annotated[bool, typer.Option("--all", help="Also list every timm architecture.")] = False) -> None:
    """List registered models (any timm name also works)."""
    from meddx.models import MODEL_INFO, list_models

    for n in list_models(include_timm=all_timm):
        info = MODEL_INFO.get(n)
        typer.echo(f"{n:24s} {info.description if info else ''}")


def model_info(
    model: Annotated[str, typer.Argument(help="Registered or timm model name.")],
    in_chans: Annotated[int, typer.Option(help="Input channels.")] = 3,
    num_classes: Annotated[int, typer.Option(help="Outputs of the head.")] = 1,
    depth: Annotated[
        Optional[str], typer.Option("--finetune-depth", help="Show which blocks train at this depth (N or all).")
    ] = None,
) -> None:
    """The model's blocks for `--finetune-depth N` (block 1 is the last), with parameter counts."""
    from meddx.api import model_info as api_model_info
    from meddx.models.finetune import blocks_table

    typer.echo(blocks_table(api_model_info(model, in_chans, num_classes, depth_value(depth)), depth))


def pretrain(
    config: Annotated[
        Optional[Path], typer.Argument(help="YAML run config (data, model and pretrain sections).")
    ] = None,
    data: Annotated[
        Optional[list[str]],
        typer.Option(
            "--data", "-d", help="Unlabelled images: a folder, CSV or .npz; repeat for several (labels are ignored)."
        ),
    ] = None,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option(help="A data set to fine-tune on later: its val and test images are left out. Repeatable."),
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="Image model to pretrain (default small_cnn).")] = None,
    objective: Annotated[
        Optional[str],
        typer.Option(help="mlm (bert_small), word2vec (vectors for any token model) or simclr; default from the data."),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for encoder.pt.")] = None,
    set_: SetOpt = None,
) -> None:
    """Self-supervised pretraining, labels unused: SimCLR on unlabelled images (--data, repeatable), or MLM of
    bert_small or word2vec vectors on `|,|` report files (a config with data.path and data.vocab_files)."""
    from meddx.api import pretrain as api_pretrain

    options = given(
        **{
            "pretrain.data": data,
            "pretrain.exclude_from": exclude,
            "model.name": model,
            "pretrain.max_epochs": epochs,
            "pretrain.objective": objective,
            "pretrain.dir": str(output) if output else None,
        }
    )
    if data:
        options.setdefault("pretrain.dir", "pretrained/simclr")
        options["pretrain.objective"] = "simclr"
    out = api_pretrain(config, **options, **set_overrides(set_))
    info = json.loads((out / "pretrain.json").read_text())
    if info.get("objective") == "simclr":
        typer.echo(_simclr_summary(out, info))
        return
    if info.get("objective") == "word2vec":
        typer.echo(
            f"wrote {out / 'embeddings.pt'} ({info['vocab_size']} tokens x {info['vector_size']}, skip-gram, "
            f"{info['epochs']} epochs, {info['seconds']} s)\nuse: --set model.embeddings={out}"
        )
        return
    typer.echo(
        f"wrote {out / 'encoder.pt'} ({info['size']} size, {info['epochs']} epochs); val MLM loss "
        f"{info.get('initial_val_mlm_loss', float('nan')):.3f} -> {info['final_val_mlm_loss']:.3f}\n"
        f"fine-tune: --set model.name=bert_small --set model.weights={out / 'encoder.pt'}"
    )


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command("model-info")(model_info)
    app.command()(pretrain)


def _simclr_summary(out: Path, info: dict) -> str:
    """What `meddx pretrain` on images wrote, the images it kept out, and how to fine-tune from it."""
    held = info.get("excluded_val_test_of") or []
    kept_out = (f"left out {info['excluded_images']} image(s) matching, by file or content, the "
                f"{info['held_out_images']} val/test images of {', '.join(held)}"
                + ("; none of them were among --data\n" if not info["excluded_images"] else "\n"))  # fmt: skip
    return (
        f"wrote {out / 'encoder.pt'} ({info['model']}, {info['images']} images, {info['epochs']} epochs); "
        f"val NT-Xent {info['initial_val_ntxent']:.3f} -> {info['final_val_ntxent']:.3f}\n"
        + (kept_out if held else "")
        + f"fine-tune: --model {info['model']} --init-from {out / 'encoder.pt'}"
    )
