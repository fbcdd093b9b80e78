"""Python logging set up from logger/logger_config.json: console, plus a file in the run's log folder."""

import json
import logging
import logging.config
from pathlib import Path

CONFIG_PATH = Path(__file__).with_name("logger_config.json")


def setup_logging(log_dir=None, level=logging.INFO):
    """Console always; file handlers write into `log_dir` (left out when log_dir is None)."""
    config = json.loads(CONFIG_PATH.read_text())
    for name, handler in list(config["handlers"].items()):
        if "filename" in handler:
            if log_dir is None:
                del config["handlers"][name]
                config["root"]["handlers"].remove(name)
            else:
                handler["filename"] = str(Path(log_dir) / handler["filename"])
    config["root"]["level"] = level
    logging.config.dictConfig(config)


def get_logger(name):
    return logging.getLogger(name)
