"""The layers: base/, utils/ and logger/ import nothing above them, and every shipped module is
registered whatever was imported first."""

import ast
import subprocess
import sys

import pytest
from conftest import ROOT

PROJECT = {"base", "data_loader", "model", "trainer", "logger", "utils"}
# What each lower folder may import from the project (besides itself).
ALLOWED = {"utils": set(), "logger": {"utils"}, "base": {"utils"}}


def project_imports(path):
    """The project's top-level packages a file imports, at any depth of the file (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_a_lower_folder_imports_nothing_above_it(folder):
    for path in sorted((ROOT / folder).glob("*.py")):
        above = project_imports(path) - ALLOWED[folder] - {folder}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


def shipped_modules():
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for folder in PROJECT
        for path in (ROOT / folder).rglob("*.py")
        if not path.name.startswith("_")
    )


def registered_after_importing(first_modules):
    """Each of `first_modules` imported first in a fresh interpreter: the registries hold the same
    models every time and report no problem."""
    script = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        "from model import MODELS, LOSSES, METRICS; from data_loader import DATA_LOADERS; "
        "from trainer import TRAINERS; "
        "print(sorted(MODELS)); print([dict(r.problems) for r in (MODELS, LOSSES, METRICS, DATA_LOADERS, TRAINERS)])"
    )
    expected = None
    for module in ["model", *first_modules]:
        result = subprocess.run([sys.executable, "-c", script, module], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, (module, result.stderr[-2000:])
        names, problems = result.stdout.splitlines()
        assert problems == "[{}, {}, {}, {}, {}]", (module, problems)
        expected = expected or names
        assert names == expected, module
    assert {"NGCF", "LightGCN", "EASE", "SASRec"} <= set(eval(expected))  # noqa: S307 - our own output


def test_the_lower_layers_imported_first_leave_every_model_registered():
    """An import cycle once left NGCF and LightGCN out of MODELS when base/base_graph_model.py was
    imported first (python -c "import base.base_graph_model; import model")."""
    registered_after_importing(["base.base_graph_model", "base.base_model", "base.batching", "model.fast.masks"])


@pytest.mark.slow
def test_every_shipped_module_imported_first_leaves_every_model_registered():
    registered_after_importing(shipped_modules())


def test_running_test_py_leaves_the_standard_librarys_test_package_alone():
    """The tests run test.py in-process (conftest.run); loaded as `test`, it would stand in for
    the standard library's `test` package for the rest of the session."""
    from conftest import ROOT, run

    assert run("test.py", "--help").returncode == 0
    assert getattr(sys.modules.get("test"), "__file__", None) != str(ROOT / "test.py")
