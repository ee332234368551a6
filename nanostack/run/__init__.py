"""Run folders: the settings of a run (config.py) and its files (folder.py), shared by the trainer
that writes them and every layer that reads them."""
from nanostack.run.config import FIELDS, TrainConfig, make_config, preset_names
from nanostack.run.folder import RunFolder, open_run

__all__ = ["FIELDS", "RunFolder", "TrainConfig", "make_config", "open_run", "preset_names"]
