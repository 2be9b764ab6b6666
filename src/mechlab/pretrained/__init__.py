"""Pretrained checkpoints: GGUF (Llama family, Gemma 3) and Hugging Face Llama-family imports into mechlab's one
Transformer class."""

from mechlab.pretrained.gguf import Imported, read_gguf, unpermute_rope_rows
from mechlab.pretrained.hf import read_hf
from mechlab.pretrained.importer import (
    BUNDLED,
    bundled_gguf,
    gemma3_gguf,
    import_checkpoint,
    smollm2_gguf,
    to_model,
)

__all__ = ["BUNDLED", "Imported", "bundled_gguf", "gemma3_gguf", "import_checkpoint", "read_gguf", "read_hf", "smollm2_gguf", "to_model", "unpermute_rope_rows"]
