"""Python logging set up from logger/logger_config.json: the console at once, and the run's log
file as soon as its folder exists (the lines logged before it are written to it first)."""

import json
import logging
import logging.config
import sys
from pathlib import Path

from utils.errors import UserError

CONFIG_PATH = Path(__file__).with_name("logger_config.json")


class _Buffer(logging.Handler):
    """Keeps the records logged before the run's log file exists."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _config():
    return json.loads(CONFIG_PATH.read_text(encoding="utf-8"))


def setup_logging(log_dir=None, level=logging.INFO, console=True, buffer=True):
    """The console (unless console=False), plus the file handlers of logger_config.json in
    `log_dir`; with log_dir None (and buffer) they wait, buffering, for attach_log_file(log_dir)."""
    config = _config()
    file_handlers = [name for name, handler in config["handlers"].items() if "filename" in handler]
    for name in file_handlers:
        if log_dir is None:
            del config["handlers"][name]
            config["root"]["handlers"].remove(name)
        else:
            config["handlers"][name]["filename"] = str(Path(log_dir) / config["handlers"][name]["filename"])
    if not console:
        config["root"]["handlers"].remove("console")
        del config["handlers"]["console"]
    config["root"]["level"] = level
    logging.config.dictConfig(config)
    if log_dir is None and file_handlers and buffer:
        logging.getLogger().addHandler(_Buffer())


def attach_log_file(log_dir):
    """Add the file handlers of logger_config.json in `log_dir`, writing the buffered lines first."""
    root = logging.getLogger()
    buffers = [h for h in root.handlers if isinstance(h, _Buffer)]
    config = _config()
    for spec in config["handlers"].values():
        if "filename" not in spec:
            continue
        handler = logging.FileHandler(Path(log_dir) / spec["filename"], encoding=spec.get("encoding", "utf8"))
        handler.setLevel(spec.get("level", "INFO"))
        fmt = config["formatters"][spec.get("formatter", "simple")]
        handler.setFormatter(logging.Formatter(fmt["format"]))
        for buffer in buffers:
            for record in buffer.records:
                handler.handle(record)
        root.addHandler(handler)
    for buffer in buffers:
        root.removeHandler(buffer)


def close_log_files():
    """Close and remove the file handlers (the console stays)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, (logging.FileHandler, _Buffer)):
            root.removeHandler(handler)
            handler.close()


def log_to_files(message, level=logging.ERROR):
    """Write `message` to the run's log file only (the console already shows it on stderr)."""
    record = logging.LogRecord("train", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, (logging.FileHandler, _Buffer)):
            handler.handle(record)


def run_main(main, args):
    """Run main(args); a user mistake becomes one line on stderr (and the log file's last line when
    one is open) and exit code 2."""
    try:
        main(args)
    except UserError as e:
        log_to_files(f"error: {e}")
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def close_logging():
    """Close and remove every handler of the root logger (the log file is complete and released)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def get_logger(name):
    return logging.getLogger(name)
