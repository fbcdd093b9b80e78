"""Find the classes a config can name, without a central list to keep up to date.

Each role's package (`model/`, `data_loader/`, `trainer/`) calls `discover` from its
`__init__.py`: every module in the folder is imported and each public subclass of the role's
base class becomes reachable by its class name. Adding a model is therefore one new file.
"""

import importlib
import inspect
import pkgutil


def discover(package_name, package_path, base_class):
    """Import every module of a package; return {class name: class} for subclasses of base_class.

    Modules whose name starts with `_` are skipped (private helpers, templates).
    """
    found = {}
    for info in pkgutil.iter_modules(package_path):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, base_class)
                and obj is not base_class
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[name] = obj
    return dict(sorted(found.items()))


def public_callables(module):
    """{name: function} for the names a module lists in `__all__` (losses, metrics)."""
    return {name: getattr(module, name) for name in module.__all__}
