"""Checkpoints moved to :mod:`mechlab.checkpoint` (used by training, evaluation, quantisation, generation and
delegate alike); this module re-exports them so ``mechlab.train.checkpoint`` keeps working."""

from mechlab.checkpoint import (  # noqa: F401
    CONFIG,
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    QUANT,
    STATE,
    WEIGHTS,
    Checkpoint,
    check_output,
    load_checkpoint,
    load_trainer_state,
    resolve_checkpoint,
    save_checkpoint,
    set_latest,
    verify_checkpoint,
)

__all__ = ["CONFIG", "FORMAT_VERSION", "LATEST", "MANIFEST", "QUANT", "STATE", "WEIGHTS", "Checkpoint",
           "check_output", "load_checkpoint", "load_trainer_state", "resolve_checkpoint", "save_checkpoint",
           "set_latest", "verify_checkpoint"]
