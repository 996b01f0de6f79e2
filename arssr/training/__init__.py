"""Training: the configuration (``config``), the data (``datasets``, ``synthetic``), the loop (``trainer``)
and its run folder (``run_folder``). The examples themselves come from :mod:`arssr.pairs`."""

from arssr.training.config import TrainConfig, check_config, load_config, parse_override
from arssr.training.run_folder import check_run_folder, cli_config
from arssr.training.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "check_config", "check_run_folder", "cli_config", "load_config", "parse_override",
           "train"]
