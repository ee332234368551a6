"""Training: config, loop, optimizer, schedule and checkpoints."""
from nanostack.train.config import TrainConfig, make_config
from nanostack.train.trainer import Interrupted, train

__all__ = ["Interrupted", "TrainConfig", "make_config", "train"]
