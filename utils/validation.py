"""What a config must look like: the one place where its structure and the values every run
relies on are checked (each class checks its own arguments, through utils/checks.py)."""

import math
import re

from utils import checks
from utils.errors import ConfigError

# Keys every config must have (the file contract: docs/config.md). `loss` and `optimizer` may be null
# for a model with nothing to train, or one that computes its own loss.
REQUIRED_KEYS = (
    "name",
    "seed",
    "data_loader.type",
    "data_loader.args.data_dir",
    "batches",
    "evaluation",
    "arch.type",
    "arch.args",
    "metrics",
    "trainer.epochs",
    "trainer.save_dir",
    "trainer.eval_period",
    "trainer.monitor",
    "trainer.early_stop",
    "trainer.save_period",
    "wandb.mode",
)
TOP_LEVEL_KEYS = {
    "name",
    "seed",
    "data_loader",
    "batches",
    "evaluation",
    "arch",
    "loss",
    "metrics",
    "optimizer",
    "lr_scheduler",
    "trainer",
    "wandb",
}
TRAINER_KEYS = {
    "type",
    "epochs",
    "save_dir",
    "save_period",
    "keep_last",
    "eval_period",
    "monitor",
    "early_stop",
    "threads",
    "args",
}
WANDB_MODES = ("online", "offline", "disabled")
METRIC_PATTERN = re.compile(r"^([a-z_][a-z0-9_]*)@([0-9]+)$")
# Keys that moved: out of data_loader.args when the evaluation protocol became its own section,
# and trainer.amp into the trainer's constructor arguments, the one channel of trainer options.
MOVED = {
    "data_loader.args.split": "evaluation.split",
    "data_loader.args.test_fraction": "evaluation.test",
    "data_loader.args.valid_fraction": "evaluation.valid",
    "data_loader.args.split_seed": "evaluation.seed",
    "data_loader.args.eval_negatives": 'evaluation.candidates ("all" for 0)',
    "data_loader.args.eval_batch_size": "evaluation.batch_size",
    "data_loader.args.batch_size": "batches.batch_size",
    "data_loader.args.sampling": "batches.sampling",
    "trainer.amp": "trainer.args.amp",
}
# The moves that are plain renames: a checkpoint's saved config is read with them applied, so that
# test.py and -r still take checkpoints written before the move.
RENAMED = ("trainer.amp",)


def migrate_renamed(config):
    """Move RENAMED keys of `config` (a checkpoint's saved config) to their MOVED place, in place;
    returns the old keys found."""
    found = []
    for old in RENAMED:
        section, key = old.split(".")
        if isinstance(config.get(section), dict) and key in config[section]:
            value = config[section].pop(key)
            *parents, last = MOVED[old].split(".")
            target = config
            for part in parents:
                target = target.setdefault(part, {})
            target.setdefault(last, value)
            found.append(old)
    return found


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def parse_metric_name(name, where="metrics"):
    """'recall@20' -> ('recall', 20); anything else is a ConfigError."""
    match = METRIC_PATTERN.match(name) if isinstance(name, str) else None
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(f"{where}: '{name}' is not a metric name (expected 'name@K' with K >= 1, e.g. 'recall@20')")
    return match.group(1), int(match.group(2))


def parse_monitor(monitor, metrics=None):
    """'max val_recall@20' -> ('max', 'val_recall@20'); 'off' -> ('off', None). With `metrics`
    (the config's list), the monitored figure must be one a run computes."""
    if not isinstance(monitor, str):
        checks.fail("trainer.monitor", "'off' or 'max|min <figure>'", monitor)
    if monitor == "off":
        return "off", None
    parts = monitor.split()
    if len(parts) != 2 or parts[0] not in ("min", "max"):
        raise ConfigError(f"trainer.monitor: expected 'off' or 'max|min <figure>', got \"{monitor}\"")
    if metrics is not None:
        available = ["loss"] + [f"val_{m}" for m in metrics]
        if parts[1] not in available:
            raise ConfigError(
                f"trainer.monitor: '{parts[1]}' is not computed (available: {', '.join(available)};"
                " a val_ metric must be listed in 'metrics')"
            )
    return parts[0], parts[1]


def safe_name(key, value):
    """A name that is one path component: letters, digits, '_', '-', '.', not starting with '.'."""
    if not (isinstance(value, str) and SAFE_NAME.match(value)):
        expected = "one folder name of at most 128 letters, digits, '_', '-' and '.', not starting with '.' or '-'"
        checks.fail(key, expected, value)
    return value


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _section(config, name, optional=False):
    node = config.get(name)
    if node is None and optional:
        return
    if not (isinstance(node, dict) and isinstance(node.get("type"), str)):
        accepted = "an object with 'type' (a name) and 'args'" + (", or null" if optional else "")
        checks.fail(f"{name}", accepted, node)
    if not isinstance(node.get("args", {}), dict):
        checks.fail(f"{name}.args", "an object", node.get("args"))


def not_finite_numbers(node, where=""):
    """(dotted key, value) of every NaN or Infinity in a config (Python's json reads them; JSON has none)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from not_finite_numbers(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from not_finite_numbers(value, f"{where}.{index}")


def validate(config, for_training=True):
    """Check the structure and the values every run relies on. Raises ConfigError.

    for_training=False (test.py): the monitor is not checked, since evaluating monitors nothing.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a JSON object, got {type(config).__name__}")
    not_finite = next(not_finite_numbers(config), None)
    if not_finite is not None:
        raise ConfigError(f"{not_finite[0]}: {not_finite[1]} is not a number JSON allows; give a finite number")
    unknown = sorted(k for k in config if k not in TOP_LEVEL_KEYS and not k.startswith("_"))
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {unknown} (accepted: {', '.join(sorted(TOP_LEVEL_KEYS))};"
            " keys starting with '_' are comments)"
        )
    for key in REQUIRED_KEYS:
        try:
            _get(config, key)
        except KeyError:
            raise ConfigError(f"{key}: missing (every config needs: {', '.join(REQUIRED_KEYS)})") from None

    safe_name("name", config["name"])
    checks.seed("seed", config["seed"])
    for section in ("data_loader", "arch"):
        _section(config, section)
    for section in ("loss", "optimizer", "lr_scheduler"):
        _section(config, section, optional=True)
    if "dataset" in config["arch"].get("args", {}):
        raise ConfigError("arch.args.dataset: the template passes the data set to the model itself; remove this key")

    lr = (config.get("optimizer") or {}).get("args", {}).get("lr")
    if lr is not None:
        checks.number("optimizer.args.lr", lr, low=0, low_open=True)
    data_args = config["data_loader"].get("args", {})
    for old, new in MOVED.items():
        try:
            _get(config, old)
        except KeyError:
            continue
        raise ConfigError(f"{old} is now {new} (docs/config.md, 'Keys that moved')")
    for section in ("batches", "evaluation"):
        if not isinstance(config[section], dict):
            checks.fail(section, "an object", config[section])
    checks.positive_int("batches.batch_size", config["batches"].get("batch_size", 1))
    data_dir = data_args["data_dir"]
    if not (isinstance(data_dir, str) and data_dir.strip()):
        checks.fail("data_loader.args.data_dir", "a folder path (a non-empty string)", data_dir)

    trainer = config["trainer"]
    if not isinstance(trainer, dict):
        checks.fail("trainer", "an object", trainer)
    unknown = sorted(set(trainer) - TRAINER_KEYS)
    if unknown:
        raise ConfigError(f"trainer: unknown key(s) {unknown} (accepted: {', '.join(sorted(TRAINER_KEYS))})")
    for key, low in (("epochs", 1), ("eval_period", 1), ("save_period", 1), ("early_stop", 0), ("keep_last", 0)):
        if key in trainer:
            checks.integer(f"trainer.{key}", trainer[key], low=low)
    if not (isinstance(trainer["save_dir"], str) and trainer["save_dir"].strip()):
        checks.fail("trainer.save_dir", "a folder path (a non-empty string)", trainer["save_dir"])
    threads = trainer.get("threads", "auto")
    if threads != "auto":
        checks.positive_int("trainer.threads", threads)
    if not isinstance(trainer.get("args", {}), dict):
        checks.fail("trainer.args", "an object", trainer.get("args"))

    metrics = config["metrics"]
    if not (isinstance(metrics, list) and metrics):
        checks.fail("metrics", 'a non-empty list such as ["recall@20"]', metrics)
    for i, metric in enumerate(metrics):
        parse_metric_name(metric, where=f"metrics[{i}]")
    parse_monitor(trainer["monitor"], metrics if for_training else None)
    wandb = config["wandb"]
    if not isinstance(wandb, dict):
        checks.fail("wandb", "an object", wandb)
    checks.one_of("wandb.mode", wandb["mode"], WANDB_MODES)
