"""Training: the one training loop (next-token prediction, a :class:`~mechlab.train.trainer.Task`, a distillation
through :mod:`mechlab.train.distill`); checkpoints are re-exported from :mod:`mechlab.checkpoint`."""

from mechlab.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
from mechlab.train.trainer import TrainConfig, TrainResult, load_train_config, lr_at, train

__all__ = ["Checkpoint", "load_checkpoint", "resolve_checkpoint", "save_checkpoint",
           "TrainConfig", "TrainResult", "load_train_config", "lr_at", "train"]
