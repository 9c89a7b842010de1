"""A trained run as a file another program runs: ONNX, TorchScript, or safetensors + spec TOML.

ONNX and TorchScript take float32 images (N, C, H, W), pixel values / 255 in [0, 1], whatever
the run's normalize: a run trained with normalize = "per-channel" has its standardisation, with
the training part's mean and std, baked into the graph (`cnnlab.inputs.Standardise`), so the
file gives `LoadedRun.predict`'s answers from x / 255 alone. They give logits (N, classes),
softmax for probabilities. The batch dimension is dynamic. The metadata, in every format, names
the study run (model, seed, epoch, key), the dataset, its class names where known, the input's
preprocessing (normalize, and the channel mean and std where used) and holds the spec as TOML.

- ONNX (`pip install 'cnnlab[onnx]'`): torch's exporter (`torch.onnx.export`, dynamo) at opset
  `ONNX_OPSET`; metadata in the model's `metadata_props`.
- TorchScript: `torch.jit.trace`, loadable with `torch.jit.load` without cnnlab; metadata in
  the archive's extra file `cnnlab.json`.
- safetensors: the weights (the state_dict of `cnnlab.build_model(spec, image_shape, classes)`)
  with the metadata in its header, and the spec as `<name>.toml` beside it. Weights alone hold
  no graph: that network takes (x / 255 - mean) / std for a per-channel run, as `input_doc`
  says, with the mean and std in the header (`channel_mean`, `channel_std`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.spec import model_to_toml
from cnnlab.trained import EpochChoice, LoadedRun, load_run

FORMATS = ("onnx", "torchscript", "safetensors")
# Opset 18 (ONNX 1.13, 2022): the lowest torch's dynamo exporter writes, so the widest range of
# runtimes (onnxruntime >= 1.14) loads the file.
ONNX_OPSET = 18
INPUT = "images"
OUTPUT = "logits"
INPUT_DOC = "float32 images (N, C, H, W): uint8 pixel values / 255, in [0, 1]"
# What a graph with the standardisation baked in adds, and what bare per-channel weights take.
BAKED_DOC = "; the per-channel standardisation (channel_mean, channel_std) is inside the graph"
STANDARDISED_DOC = (
    "float32 images (N, C, H, W): (uint8 pixel values / 255 - channel_mean) / channel_std, "
    "each channel's mean and std as listed here"
)
OUTPUT_DOC = "logits (N, classes); softmax gives the class probabilities"
# The install line for each format's optional packages (None: torch alone writes it).
NEEDS = {"onnx": ("onnx", "onnxscript"), "torchscript": (), "safetensors": ()}


class ExportError(CnnlabError):
    """An export cannot be written: unknown format, missing package, unwritable path."""


def export_run(
    directory: str | Path,
    *,
    model: str,
    output: str | Path,
    format: str,
    seed: int | None = None,
    epoch: EpochChoice = "best",
) -> list[Path]:
    """Write `model`'s run (seed, epoch as `load_run` takes them) to `output` as `format`;
    returns the files written (safetensors: the weights and the spec TOML beside them)."""
    check_format(format)
    loaded = load_run(directory, model=model, seed=seed, epoch=epoch)
    return export_loaded(loaded, Path(output), format)


def check_format(format: str) -> None:
    """An unknown format, or one whose packages are missing: ExportError with the fix."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    missing = [name for name in NEEDS[format] if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"--format {format} needs the package(s) {', '.join(missing)}: "
            f"pip install 'cnnlab[{format}]'"
        )


def export_paths(output: str | Path, format: str) -> list[Path]:
    """The files an export to `output` writes (safetensors: the spec TOML beside the weights)."""
    output = Path(output).expanduser()
    return [output, output.with_suffix(".toml")] if format == "safetensors" else [output]


def export_loaded(loaded: LoadedRun, output: Path, format: str) -> list[Path]:
    """Write an already loaded run; see `export_run`."""
    check_format(format)
    output = output.expanduser()
    if output.is_dir():
        raise ExportError(f"{output} is a directory; give the file to write (-o FILE)")
    if len(set(export_paths(output, format))) < len(export_paths(output, format)):
        raise ExportError(
            f"{output}: the spec TOML is written beside the weights under this very name; "
            "give the weights another suffix (-o NAME.safetensors)"
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        writer = {"onnx": _onnx, "torchscript": _torchscript, "safetensors": _safetensors}
        return writer[format](loaded, output)
    except OSError as error:
        raise ExportError(f"cannot write {output}: {error.strerror or error}") from None


def metadata(loaded: LoadedRun, format: str) -> dict[str, str]:
    """What the exported file says about itself, as strings (what every format's header holds)."""
    height, width, channels = loaded.image_shape
    stats = loaded.channel_stats
    fields: dict[str, Any] = {
        "cnnlab_version": __version__,
        "format": format,
        "model": loaded.model_name,
        "seed": loaded.seed,
        "epoch": loaded.epoch,
        "epoch_chosen": loaded.chosen,
        "run_key": loaded.key,
        "dataset": loaded.dataset,
        "classes": loaded.classes,
        "class_names": json.dumps(list(loaded.class_names or [])),
        "input": INPUT,
        "input_shape": json.dumps(["N", channels, height, width]),
        "input_doc": _input_doc(stats is not None, format),
        "normalize": "scale" if stats is None else "per-channel",
        "output": OUTPUT,
        "output_doc": OUTPUT_DOC,
        "spec_toml": model_to_toml(loaded.spec),
    }
    if stats is not None:
        fields["channel_mean"] = json.dumps(list(stats.mean))
        fields["channel_std"] = json.dumps(list(stats.std))
    if format == "onnx":
        fields["opset"] = ONNX_OPSET
    return {key: str(value) for key, value in fields.items()}


def _input_doc(standardised: bool, format: str) -> str:
    if not standardised:
        return INPUT_DOC
    return STANDARDISED_DOC if format == "safetensors" else INPUT_DOC + BAKED_DOC


def _example(loaded: LoadedRun) -> torch.Tensor:
    height, width, channels = loaded.image_shape
    # Two images: an exporter specialises a batch of 1 into the graph.
    return torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0))


def _onnx(loaded: LoadedRun, output: Path) -> list[Path]:
    import onnx

    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(
            loaded.model,
            (_example(loaded),),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    proto = program.model_proto
    proto.doc_string = f"cnnlab {loaded.model_name} seed {loaded.seed} epoch {loaded.epoch}"
    for key, value in metadata(loaded, "onnx").items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(output))
    return [output]


def _torchscript(loaded: LoadedRun, output: Path) -> list[Path]:
    with _quiet():
        traced = torch.jit.trace(loaded.model, _example(loaded), check_trace=False)
        extra = {"cnnlab.json": json.dumps(metadata(loaded, "torchscript"), indent=1)}
        torch.jit.save(traced, str(output), _extra_files=extra)
    return [output]


def _safetensors(loaded: LoadedRun, output: Path) -> list[Path]:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in loaded.network.state_dict().items()}
    # Bytes written by Python, not safetensors' save_file: that creates the file 0600, where an
    # export is meant to be handed on (the umask's mode, as the other formats and checkpoints).
    output.write_bytes(save(state, metadata=metadata(loaded, "safetensors")))
    spec_path = output.with_suffix(".toml")
    spec_path.write_text(model_to_toml(loaded.spec), encoding="utf-8")
    return [output, spec_path]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without the exporters' chatter on the terminal: torch.jit's deprecation notice, and the
    ONNX exporter's log lines about operators of packages not installed (torchvision)."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_log.setLevel(level)
