"""Find the classes and functions a config can name, without a central list to keep up to date.

Each role's package (`model/`, `data_loader/`, `trainer/`, `model/loss/`, `model/metric/`) calls
`discover` or `discover_functions` from its `__init__.py`: every module in the folder is imported
and what it defines becomes reachable by its name. Adding a module is therefore one new file.

A module that cannot be imported, or a class that leaves an abstract method unimplemented, is
not silently skipped: it is kept in `Registry.problems`, so that naming it in a config (or
`python train.py --list`) says which file and why.
"""

import importlib
import inspect
import pkgutil


class Registry(dict):
    """{name: class or function}, plus `problems`: {name or file: why it could not be registered}."""

    def __init__(self, found, problems, role, conflicts=()):
        super().__init__(sorted(found.items()))
        self.problems, self.role, self.conflicts = problems, role, list(conflicts)

    def check(self):
        """A name defined in two files (two teammates' modules merged) is an error naming both: the
        second would silently win."""
        from utils.errors import ConfigError

        if self.conflicts:
            name, first, second = self.conflicts[0]
            raise ConfigError(
                f"{self.role} '{name}' is defined in {first} and in {second}: rename one (each name is registered once)"
            )

    def lookup(self, name, key):
        """The entry called `name`, for the config key `key`; otherwise a ConfigError saying why."""
        from utils.errors import ConfigError

        if name in self:
            return self[name]
        if name in self.problems:
            raise ConfigError(f"{key}: {self.problems[name]}")
        message = f"{key}: unknown name '{name}' (available: {', '.join(self) or 'none'})"
        broken = [reason for entry, reason in self.problems.items() if entry.endswith(".py")]
        if broken:
            message += "; not loaded: " + "; ".join(broken)
        raise ConfigError(message)


def _modules(package_name, package_path):
    """(module or None, its file as 'package/name.py', the import error or None) for each module."""
    folder = package_name.replace(".", "/")
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:  # private helpers, templates, sub-packages
            continue
        path = f"{folder}/{info.name}.py"
        try:
            yield importlib.import_module(f"{package_name}.{info.name}"), path, None
        except Exception as e:  # noqa: BLE001 - any error in a teammate's file is reported, not raised here
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            yield None, path, f"{path} could not be imported ({type(e).__name__}: {first})"


def _register(found, where, conflicts, path, name, obj):
    """found[name] = obj, unless another file registered the name first (then a conflict)."""
    if name in found and found[name] is not obj:
        conflicts.append((name, where[name], path))
        return
    found[name], where[name] = obj, path


def _definitions(package_name, package_path, problems):
    """(its file, name, object) for each public object a module of the package defines itself;
    a module that cannot be imported goes to `problems` instead."""
    for module, path, error in _modules(package_name, package_path):
        if module is None:
            problems[path] = error
            continue
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
                yield path, name, obj


def discover(package_name, package_path, base_class):
    """{class name: class} for the public subclasses of base_class defined in the package's modules."""
    found, where, problems, conflicts = {}, {}, {}, []
    for path, name, obj in _definitions(package_name, package_path, problems):
        if not (inspect.isclass(obj) and issubclass(obj, base_class) and obj is not base_class):
            continue
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            problems[name] = (
                f"{name} in {path} cannot be built: it does not implement {missing} (abstract in {base_class.__name__})"
            )
        else:
            _register(found, where, conflicts, path, name, obj)
    return Registry(found, problems, base_class.__name__, conflicts)


def discover_functions(package_name, package_path, role):
    """{function name: function} for the public functions defined in the package's modules."""
    found, where, problems, conflicts = {}, {}, {}, []
    for path, name, obj in _definitions(package_name, package_path, problems):
        if inspect.isfunction(obj):
            _register(found, where, conflicts, path, name, obj)
    return Registry(found, problems, role, conflicts)


def summary(obj):
    """The first line of an object's docstring (for --list)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"


def listing(models, data_loaders, trainers, losses, metrics):
    """What --list prints: every module a config can name, with the first line of its docstring."""
    sections = [
        ("models (arch.type)", models),
        ("data loaders (data_loader.type)", data_loaders),
        ("trainers (trainer.type)", trainers),
        ("losses (loss.type)", losses),
        ("metrics (metrics: name@K)", metrics),
    ]
    lines = []
    for title, registry in sections:
        lines.append(f"{title}:")
        width = max((len(name) for name in registry), default=0)
        lines += [f"  {name.ljust(width)}  {summary(obj)}" for name, obj in registry.items()]
        for reason in getattr(registry, "problems", {}).values():
            lines.append(f"  ! {reason}")
        lines.append("")
    return "\n".join(lines).rstrip()
