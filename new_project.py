"""Start a new project from this template: python new_project.py ../my_project

Copies what the template is made of — in a git checkout, the files git tracks (`git ls-files`),
so your runs, data, caches, exports and scratch files stay behind; elsewhere, everything but those
(the patterns below). Then `cd ../my_project && git init`.
"""

import shutil
import subprocess
import sys
from pathlib import Path

IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "saved",
    "data",
    "wandb",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.pth",
    "*.csv",
    "results*.json",
)


def tracked_files(source):
    """The files git tracks in `source`, or None when it is not a git checkout (or git is missing)."""
    try:
        result = subprocess.run(["git", "ls-files", "-z"], cwd=source, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name for name in result.stdout.decode().split("\0") if name]


def copy_project(source, target, files):
    """Copy into a temporary folder beside `target`, then rename it into place: a full or read-only
    disk leaves no half project behind."""
    work = target.parent / f".{target.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    try:
        if files is None:
            shutil.copytree(source, work, ignore=IGNORE)
        else:
            for name in files:
                if (source / name).is_file():  # a tracked file deleted in the work tree is not copied
                    (work / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / name, work / name)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def main(argv):
    if len(argv) != 1:
        print("usage: python new_project.py TARGET_FOLDER", file=sys.stderr)
        return 2
    source, target = Path(__file__).resolve().parent, Path(argv[0]).resolve()
    if target.exists():
        print(f"error: {target} already exists; choose a new folder", file=sys.stderr)
        return 2
    if target.is_relative_to(source):
        print(f"error: {target} is inside the template ({source}); choose a folder outside it", file=sys.stderr)
        return 2
    files = tracked_files(source)
    try:
        copy_project(source, target, files)
    except OSError as e:
        print(
            f"error: cannot write the new project in {target.parent} ({e.strerror or e}); nothing was left there",
            file=sys.stderr,
        )
        return 1
    print(
        f"New project in {target} ({'the files git tracks' if files is not None else 'the template files'}). "
        f"Next: cd {target} && git init"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
