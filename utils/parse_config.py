"""The experiment config: JSON file + command-line overrides -> one validated dict.

Parsing has no side effects. `ConfigParser.from_args` reads and checks; folders, log files and
wandb are started later, in one visible place (`train.py` calls `make_run_dirs`).
"""

import copy
import inspect
import json
import re
from datetime import datetime
from pathlib import Path

from utils.errors import ConfigError
from utils.util import read_json, write_json

# Keys every config must have (the file contract in DESIGN.md).
REQUIRED_KEYS = (
    "name",
    "seed",
    "data_loader.type",
    "data_loader.args.data_dir",
    "arch.type",
    "arch.args",
    "loss",
    "metrics",
    "optimizer",
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
    "arch",
    "loss",
    "metrics",
    "optimizer",
    "lr_scheduler",
    "trainer",
    "wandb",
}
WANDB_MODES = ("online", "offline", "disabled")
METRIC_PATTERN = re.compile(r"^([a-z_][a-z0-9_]*)@([0-9]+)$")

# The command-line shortcuts and the config key each one sets.
SHORTCUTS = {
    "lr": "optimizer.args.lr",
    "bs": "data_loader.args.batch_size",
    "epochs": "trainer.epochs",
}


def parse_metric_name(name, where="metrics"):
    """'recall@20' -> ('recall', 20); anything else is a ConfigError."""
    match = METRIC_PATTERN.match(name) if isinstance(name, str) else None
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(f"{where}: '{name}' is not a metric name (expected 'name@K' with K >= 1, e.g. 'recall@20')")
    return match.group(1), int(match.group(2))


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _type_name(value):
    return {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _same_json_type(old, new):
    """Whether `new` may replace `old`: the same JSON type (an integer may stand for a number)."""
    if old is None:
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    return isinstance(new, type(old))


def apply_override(config, dotted, value, origin="--set"):
    """Set an existing dotted key of `config` to `value` (in place). New keys are refused."""
    parts = dotted.split(".")
    node = config
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            part = int(part)
        elif not isinstance(node, dict) or part not in node:
            if isinstance(node, dict):
                keys = ", ".join(sorted(node)) or "(none)"
                raise ConfigError(f"{origin} {dotted}: the config has no key '{here}' (keys here: {keys})")
            raise ConfigError(f"{origin} {dotted}: '{'.'.join(parts[:depth])}' is not an object")
        if depth == len(parts) - 1:
            if not _same_json_type(node[part], value):
                raise ConfigError(
                    f"{origin} {dotted}: expected {_type_name(node[part])} like the config's "
                    f"{json.dumps(node[part])}, got {json.dumps(value)}"
                )
            node[part] = value
        else:
            node = node[part]


def parse_set_option(text):
    """'a.b=VALUE' -> ('a.b', value); VALUE is JSON, or a plain string when it is not JSON."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set optimizer.args.lr=0.001")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text}: the key before '=' is empty")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # e.g. --set data_loader.args.data_dir=/data (the shell ate the quotes)
    return key, value


def _check(condition, key, expected, config):
    if not condition:
        try:
            got = json.dumps(_get(config, key))
        except KeyError:
            got = "nothing"
        raise ConfigError(f"{key}: expected {expected}, got {got}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate(config):
    """Check the structure and the values every trainer relies on. Raises ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a JSON object, got {_type_name(config)}")
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

    name = config["name"]
    _check(
        isinstance(name, str) and name.strip() and re.fullmatch(r"[\w.-]+", name) and name not in (".", ".."),
        "name",
        "a non-empty folder name (letters, digits, '_', '-', '.')",
        config,
    )
    _check(_is_int(config["seed"]), "seed", "an integer", config)
    for section in ("data_loader", "arch", "optimizer", "loss"):
        node = config[section]
        _check(
            isinstance(node, dict) and isinstance(node.get("type"), str),
            f"{section}.type",
            "the name of a class or function (a string)",
            config,
        )
        _check(isinstance(node.get("args", {}), dict), f"{section}.args", "an object", config)
    if config.get("lr_scheduler") is not None:
        node = config["lr_scheduler"]
        _check(
            isinstance(node, dict) and isinstance(node.get("type"), str),
            "lr_scheduler.type",
            "the name of a torch.optim.lr_scheduler class, or lr_scheduler: null",
            config,
        )

    lr = config["optimizer"].get("args", {}).get("lr")
    if lr is not None:
        _check(
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0,
            "optimizer.args.lr",
            "a positive number",
            config,
        )
    batch = config["data_loader"]["args"].get("batch_size")
    if batch is not None:
        _check(_is_int(batch) and batch > 0, "data_loader.args.batch_size", "a positive integer", config)
    _check(
        isinstance(config["data_loader"]["args"]["data_dir"], str),
        "data_loader.args.data_dir",
        "a folder path (a string)",
        config,
    )

    trainer = config["trainer"]
    for key, low in (("epochs", 1), ("eval_period", 1), ("save_period", 1), ("early_stop", 0), ("keep_last", 0)):
        if key in trainer:
            _check(_is_int(trainer[key]) and trainer[key] >= low, f"trainer.{key}", f"an integer >= {low}", config)
    _check(
        isinstance(trainer["save_dir"], str) and trainer["save_dir"],
        "trainer.save_dir",
        "a folder path (a string)",
        config,
    )

    metrics = config["metrics"]
    _check(isinstance(metrics, list) and metrics, "metrics", 'a non-empty list such as ["recall@20"]', config)
    for i, metric in enumerate(metrics):
        parse_metric_name(metric, where=f"metrics[{i}]")

    monitor = trainer["monitor"]
    _check(isinstance(monitor, str), "trainer.monitor", "'off' or 'max|min <metric>'", config)
    if monitor != "off":
        parts = monitor.split()
        available = ["loss"] + [f"val_{m}" for m in metrics]
        if len(parts) != 2 or parts[0] not in ("min", "max"):
            raise ConfigError(f"trainer.monitor: expected 'off' or 'max|min <metric>', got \"{monitor}\"")
        if parts[1] not in available:
            raise ConfigError(
                f"trainer.monitor: '{parts[1]}' is not computed (available: {', '.join(available)};"
                " a val_ metric must be listed in 'metrics')"
            )
    _check(config["wandb"]["mode"] in WANDB_MODES, "wandb.mode", f"one of {', '.join(WANDB_MODES)}", config)


def _lookup(namespace, name, key):
    if name not in namespace:
        raise ConfigError(f"{key}.type: unknown name '{name}' (available: {', '.join(sorted(namespace))})")
    return namespace[name]


class ConfigParser:
    """A validated experiment config, the run folders it names, and builders of its objects.

    config: the resolved dict (file + overrides); resume: checkpoint path or None;
    run_id: the run folder's name.
    """

    def __init__(self, config, resume=None, run_id=None, run_dir=None):
        validate(config)
        self.config = config
        self.resume = Path(resume) if resume is not None else None
        self.run_id = run_id or datetime.now().strftime("%m%d_%H%M%S")
        save_dir = Path(config["trainer"]["save_dir"])
        # A resumed run continues in its checkpoint's folder unless a new --run-id is given.
        self.save_dir = Path(run_dir) if run_dir else save_dir / "models" / config["name"] / self.run_id
        self.log_dir = save_dir / "log" / config["name"] / self.save_dir.name

    @classmethod
    def from_args(cls, args, checkpoint_config=None):
        """Build from parsed command-line args (see train.py / test.py).

        checkpoint_config: the config stored in the checkpoint given with -r, if any; a config
        file given with -c beside -r replaces it (fine-tuning).
        """
        if getattr(args, "config", None):
            config = read_json(args.config)
            origin = str(args.config)
        elif checkpoint_config is not None:
            config = copy.deepcopy(checkpoint_config)
            origin = f"{args.resume} (its saved config)"
        else:
            raise ConfigError("no config: give -c CONFIG.json, or -r CHECKPOINT to resume")
        if not isinstance(config, dict):
            raise ConfigError(f"{origin}: the config must be a JSON object")

        for option, key in SHORTCUTS.items():
            value = getattr(args, option, None)
            if value is not None:
                apply_override(config, key, value, origin=f"--{option}")
        for text in getattr(args, "set", None) or []:
            key, value = parse_set_option(text)
            apply_override(config, key, value)
        try:
            validate(config)
        except ConfigError as e:
            raise ConfigError(f"{origin}: {e}") from None

        resume = getattr(args, "resume", None)
        run_id = getattr(args, "run_id", None)
        run_dir = Path(resume).parent if resume is not None and run_id is None else None
        return cls(config, resume=resume, run_id=run_id, run_dir=run_dir)

    def make_run_dirs(self):
        """Create the run and log folders and write the resolved config beside the checkpoints."""
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.config, self.save_dir / "config.json")
        except OSError as e:
            raise ConfigError(
                f"trainer.save_dir: cannot write the run folder {self.save_dir} "
                f"({e.strerror or e}); choose a writable folder"
            ) from None

    def init_obj(self, key, namespace, *args, **kwargs):
        """Build `namespace[config[key]['type']](*args, **config[key]['args'], **kwargs)`.

        namespace: {name: class}. Unknown names and arguments the class does not take are
        ConfigErrors naming the key and what is accepted.
        """
        cls, module_args = self.check_obj(key, namespace, *args, **kwargs)
        return cls(*args, **module_args)

    def check_obj(self, key, namespace, *args, **kwargs):
        """What init_obj checks, without building: (class, its keyword arguments).

        train.py calls it for every section before it creates anything, so a wrong name or
        argument leaves no empty run folder behind.
        """
        section = self._section(key)
        cls = _lookup(namespace, section["type"], key)
        module_args = dict(section.get("args", {}))
        assert not set(kwargs) & set(module_args), f"{key}.args may not set {set(kwargs) & set(module_args)}"
        module_args.update(kwargs)
        self._check_signature(cls, key, section["type"], args, module_args)
        return cls, module_args

    def init_ftn(self, key, namespace, *args, **kwargs):
        """Like init_obj, but returns a function with the config's arguments bound."""
        fn, module_args = self.check_obj(key, namespace, None, *args, **kwargs)  # None: the model output

        def bound(*call_args, **call_kwargs):
            return fn(*args, *call_args, **module_args, **call_kwargs)

        bound.__name__ = fn.__name__
        return bound

    def _section(self, key):
        section = self.config.get(key)
        if not isinstance(section, dict) or "type" not in section:
            raise ConfigError(f"{key}: expected an object with 'type' and 'args'")
        return section

    @staticmethod
    def _check_signature(cls, key, name, args, kwargs):
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):  # some builtins have no signature; let them check
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:
            accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise ConfigError(f"{key}.args: {name} {e} (accepted: {', '.join(accepted)})") from None

    def __getitem__(self, name):
        return self.config[name]

    def get(self, name, default=None):
        return self.config.get(name, default)

    def save(self, path):
        write_json(self.config, path)
