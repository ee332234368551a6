"""Training: the loop (trainer.py), the engine it runs on (backends.py), optimizer, schedule, what a
checkpoint holds (checkpoint.py) and how a run starts in its folder (start.py). Settings and run
folders are nanostack.run's."""
from nanostack.errors import Interrupted
from nanostack.run.config import TrainConfig, make_config
from nanostack.train.trainer import train

__all__ = ["Interrupted", "TrainConfig", "make_config", "train"]
