"""Training: the one training loop and checkpoints."""

from mechlab.train.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
from mechlab.train.trainer import TrainConfig, TrainResult, load_train_config, lr_at, train

__all__ = ["Checkpoint", "load_checkpoint", "resolve_checkpoint", "save_checkpoint",
           "TrainConfig", "TrainResult", "load_train_config", "lr_at", "train"]
