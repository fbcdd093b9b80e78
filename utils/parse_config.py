"""The experiment config: JSON file + command-line overrides -> one validated dict, and the
builders that turn its sections into objects by name.

Parsing has no side effects: `ConfigParser.from_args` reads and checks; the run folder, log files
and wandb are started later, in one visible place (train.py, through utils/runs.py). What a valid
config looks like is written in utils/validation.py.
"""

import copy
import inspect
import json
import logging
from pathlib import Path

from utils.errors import ConfigError
from utils.validation import MOVED, migrate_renamed, parse_metric_name, safe_name, validate

__all__ = ["ConfigParser", "apply_override", "parse_metric_name", "parse_set_option", "validate"]

# The command-line shortcuts and the config key each one sets.
SHORTCUTS = {
    "lr": "optimizer.args.lr",
    "bs": "batches.batch_size",
    "epochs": "trainer.epochs",
    "threads": "trainer.threads",
}


def read_json(path):
    """Read a JSON file; a syntax error names the file, line and column."""
    path = Path(path)
    if not str(path).strip():
        raise ConfigError("the config path is empty (expected a JSON config file)")
    if not path.is_file():
        kind = "a folder, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"{path}: {kind} (expected a JSON config file)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the config as UTF-8"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: no_repeated_keys(pairs, path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None


def no_repeated_keys(pairs, path):
    """A JSON object as a dict; a key given twice in one object is an error (which one wins is not
    something a config should leave to chance)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"{path}: the key {key!r} is given twice in one object; keep one")
        seen[key] = value
    return seen


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
    """Whether `new` may replace `old`: the same JSON type, except that strings and numbers stand
    for each other (a mode such as "auto" or "all" beside a count or a size), an integer and a
    number stand for each other, an object and a number stand for each other (`evaluation.test`
    is a share for one split and {"last": N, "random": M} for another), and null may stand for an
    object (an optional section). Each class then checks its own values."""
    if old is None or (isinstance(old, dict) and new is None):
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, dict) or isinstance(new, dict):
        return isinstance(old, (dict, int, float)) and isinstance(new, (dict, int, float))
    if isinstance(old, str) or isinstance(new, str):
        return isinstance(old, (str, int, float)) and isinstance(new, (str, int, float))
    if isinstance(old, (int, float)):  # a count and a share stand for each other too (evaluation.test)
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


def set_shortcut(config, dotted, value, origin):
    """A command-line shortcut sets its key; one the config lacks (an older run's config) is added."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last not in node:
        node[last] = value
        return
    apply_override(config, dotted, value, origin=origin)


class ConfigParser:
    """A validated experiment config and the builders of its objects.

    config: the resolved dict (file + overrides); resume: the checkpoint path given with -r, or
    None; run_id: the run folder's name given with --run-id, or None (utils/runs.py picks one).
    """

    def __init__(self, config, resume=None, run_id=None, for_training=True, origin=None):
        try:
            validate(config, for_training=for_training)
        except ConfigError as e:  # said with where the config came from (a file, a checkpoint)
            raise ConfigError(f"{origin}: {e}" if origin else str(e)) from None
        self.config = config
        self.resume = resume
        self.run_id = None if run_id is None else safe_name("--run-id", run_id)

    @classmethod
    def from_args(cls, args, checkpoint_config=None, for_training=True):
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
            for old in migrate_renamed(config):
                logging.getLogger("config").info(f"{origin}: {old} is read as {MOVED[old]}")
        else:
            raise ConfigError("no config: give -c CONFIG.json, or -r CHECKPOINT to resume")
        if not isinstance(config, dict):
            raise ConfigError(f"{origin}: the config must be a JSON object")

        for option, key in SHORTCUTS.items():
            value = getattr(args, option, None)
            if value is not None:
                set_shortcut(config, key, value, origin=f"--{option}")
        for text in getattr(args, "set", None) or []:
            key, value = parse_set_option(text)
            apply_override(config, key, value)
        resume, run_id = getattr(args, "resume", None), getattr(args, "run_id", None)
        return cls(config, resume=resume, run_id=run_id, for_training=for_training, origin=origin)

    def init_obj(self, key, namespace, *args, **kwargs):
        """Build `namespace[config[key]['type']](*args, **config[key]['args'], **kwargs)`.

        namespace: {name: class}. Unknown names and arguments the class does not take are
        ConfigErrors naming the key and what is accepted.
        """
        cls, module_args = self.check_obj(key, namespace, *args, **kwargs)
        return cls(*args, **module_args)

    def check_obj(self, key, namespace, *args, **kwargs):
        """What init_obj checks, without building: (class, its keyword arguments).

        train.py calls it for every section before it builds anything, so a wrong name or argument
        is reported before any data is read.
        """
        section = self._section(key)
        if hasattr(namespace, "lookup"):
            cls = namespace.lookup(section["type"], f"{key}.type")
        elif section["type"] in namespace:
            cls = namespace[section["type"]]
        else:
            available = ", ".join(sorted(namespace))
            raise ConfigError(f"{key}.type: unknown name '{section['type']}' (available: {available})")
        module_args = dict(section.get("args", {}))
        taken = sorted(set(kwargs) & set(module_args))
        if taken:
            raise ConfigError(f"{key}.args.{taken[0]}: set by the template itself; remove it from the config")
        module_args.update(kwargs)
        self._check_signature(cls, f"{key}.args", section["type"], args, module_args)
        return cls, module_args

    def init_section(self, key, cls, *args, **kwargs):
        """Build `cls(*args, **config[key], **kwargs)` from a section without a type: its keys are
        the keyword arguments (`evaluation`, `batches`), checked against cls's signature."""
        section = self.config.get(key)
        if not isinstance(section, dict):
            raise ConfigError(f"{key}: expected an object")
        self._check_signature(cls, key, cls.__name__, args, {**section, **kwargs})
        return cls(*args, **section, **kwargs)

    def bind_loss(self, key, namespace):
        """A loss: `fn(output, step)` with the config's arguments bound."""
        fn, module_args = self.check_obj(key, namespace, None, None)  # None, None: output and step

        def bound(output, step):
            return fn(output, step, **module_args)

        bound.__name__ = fn.__name__
        return bound

    def _section(self, key):
        section = self.config.get(key)
        if not isinstance(section, dict) or "type" not in section:
            raise ConfigError(f"{key}: expected an object with 'type' and 'args'")
        return section

    @staticmethod
    def _check_signature(cls, where, name, args, kwargs):
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):  # some builtins have no signature; let them check
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:
            accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise ConfigError(f"{where}: {name} {e} (accepted: {', '.join(accepted)})") from None

    def __getitem__(self, name):
        return self.config[name]

    def get(self, name, default=None):
        return self.config.get(name, default)
