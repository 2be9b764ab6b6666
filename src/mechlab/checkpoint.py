"""Checkpoints: a directory holding safetensors weights, a JSON config, the tokenizer, optionally the trainer
state, and a manifest of sha256 checksums. Written atomically (a temporary directory renamed into place), loaded
and verified by one call.

A run directory keeps several checkpoints under ``checkpoints/step-NNNNNNN`` and a ``latest`` file naming the
newest; every loader accepts either a checkpoint directory or a run directory.

One module for every user (the trainer, evaluation, quantisation, generation, export, delegate's local backend);
``mechlab.train.checkpoint`` re-exports it under its old path.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mechlab import __version__
from mechlab.data.tokenizers import TOKENIZER_FILE, Tokenizer, load_tokenizer, save_tokenizer
from mechlab.errors import CheckpointError, ConfigError
from mechlab.models import ModelConfig, build_model
from mechlab.quant.api import apply_quantization_spec, quantization_spec
from mechlab.utils import atomic_path, file_on_path, sha256_file

FORMAT_VERSION = 1
WEIGHTS, CONFIG, STATE, MANIFEST, LATEST = "model.safetensors", "config.json", "trainer_state.pt", "manifest.json", "latest"
QUANT = "quantization.json"  # present in checkpoints of quantised models (mechlab.quant)
log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    model: torch.nn.Module
    tokenizer: Tokenizer
    config: ModelConfig
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(directory: str | Path, model: torch.nn.Module, tokenizer: Tokenizer,
                    meta: dict[str, Any] | None = None, trainer_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory atomically: all files appear together, or none do."""
    directory = Path(directory)
    config: ModelConfig = model.config
    with atomic_path(directory, is_dir=True) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS, metadata={"format": "mechlab", "version": str(FORMAT_VERSION)})
        (tmp / CONFIG).write_text(json.dumps({
            "format_version": FORMAT_VERSION, "mechlab_version": __version__,
            "model": config.to_dict(), "meta": meta or {},
        }, indent=2, sort_keys=True) + "\n")
        save_tokenizer(tokenizer, tmp)
        spec = quantization_spec(model)
        if spec is not None:
            (tmp / QUANT).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE)
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MANIFEST).write_text(json.dumps({f: sha256_file(tmp / f) for f in files}, indent=2) + "\n")
    return directory


def check_output(directory: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output path a new checkpoint must not replace (before any work is done): a file (or a path through
    one), a training run or its checkpoints folder (its checkpoints, metrics and config would be lost), a non-empty
    folder that is not a checkpoint, or an existing checkpoint unless ``overwrite`` (then it is replaced, with a
    warning). Raises ConfigError."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"output {directory} is a file, not a checkpoint directory; choose another -o")
    if (blocker := file_on_path(directory)) is not None:
        raise ConfigError(f"output {directory}: {blocker} on its path is a file; choose another -o")
    if (directory / LATEST).exists() or (directory / "train_config.json").exists():
        raise ConfigError(f"output {directory} holds a training run; writing a checkpoint there would delete it: "
                          f"choose another -o")
    resolved = directory.resolve()
    run = next((p for p in resolved.parents if (p / "train_config.json").is_file()
                and (p / "checkpoints") in (resolved, *resolved.parents)), None)
    if run is not None:
        raise ConfigError(f"output {directory} is among the checkpoints of the training run {run} (resuming needs "
                          f"them): choose another -o")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / CONFIG).is_file():
            raise ConfigError(f"output {directory} is a folder with other files in it, not a checkpoint; choose "
                              f"another -o (or an empty or new folder)")
        if not overwrite:
            raise ConfigError(f"output {directory} already holds a checkpoint: pass --overwrite to replace it, or "
                              f"choose another -o")
        log.warning("replacing the checkpoint at %s", directory)
    return directory


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory that ``path`` (a checkpoint or a run directory) stands for."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / CONFIG).is_file():
        return path
    if (path / LATEST).is_file():
        target = path / (path / LATEST).read_text().strip()
        if (target / CONFIG).is_file():
            return target
        raise CheckpointError(f"{path / LATEST} names {target}, which is not a checkpoint")
    raise CheckpointError(f"{path} is neither a checkpoint (no {CONFIG}) nor a run directory (no {LATEST})")


def verify_checkpoint(directory: Path) -> dict[str, str]:
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{directory} has no {MANIFEST}: it is incomplete; re-save or re-train it")
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest.items():
        f = directory / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing (listed in {MANIFEST}); the checkpoint is incomplete")
        if sha256_file(f) != digest:
            raise CheckpointError(f"{f} does not match its checksum: the file is truncated or corrupt; "
                                  "restore it or use an earlier checkpoint")
    return manifest


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> Checkpoint:
    """Model (in eval mode), tokenizer and config from a checkpoint or run directory."""
    directory = resolve_checkpoint(path)
    if verify:
        verify_checkpoint(directory)
    try:
        spec = json.loads((directory / CONFIG).read_text())
        config = ModelConfig.from_dict(spec["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{directory / CONFIG} is not a valid mechlab config: {e}") from e
    if spec.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{directory} was written by a newer mechlab (format {spec['format_version']}); upgrade")
    model = build_model(config)
    if (directory / QUANT).is_file():
        try:
            apply_quantization_spec(model, json.loads((directory / QUANT).read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ConfigError, AttributeError) as e:
            raise CheckpointError(f"{directory / QUANT} is not a valid quantisation spec: {e}") from e
    try:
        state = load_file(directory / WEIGHTS, device=str(device))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"cannot load weights from {directory / WEIGHTS}: {e}") from e
    model.to(device).eval()
    tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    return Checkpoint(model, tokenizer, config, directory, spec.get("meta", {}))


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    directory = resolve_checkpoint(path)
    f = directory / STATE
    if not f.is_file():
        raise CheckpointError(f"{directory} has no trainer state: it cannot be resumed (it is a model-only checkpoint)")
    return torch.load(f, map_location="cpu", weights_only=True)


def set_latest(run_dir: Path, checkpoint: Path, keep: int) -> None:
    """Point ``run_dir/latest`` at ``checkpoint`` and delete all but the ``keep`` newest step checkpoints."""
    with atomic_path(run_dir / LATEST) as tmp:
        tmp.write_text(checkpoint.relative_to(run_dir).as_posix() + "\n")
    steps = sorted((run_dir / "checkpoints").glob("step-*"))
    for old in steps[: max(len(steps) - keep, 0)]:
        if old != checkpoint:
            shutil.rmtree(old, ignore_errors=True)
