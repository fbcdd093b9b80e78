"""Start a new project from this template: python new_project.py ../my_project

Copies the code, configs and tests, without runs, data, caches or git history; then
`cd ../my_project && git init`.
"""

import shutil
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
    "results*.json",
)


def main(argv):
    if len(argv) != 1:
        print("usage: python new_project.py TARGET_FOLDER", file=sys.stderr)
        return 2
    source, target = Path(__file__).resolve().parent, Path(argv[0]).resolve()
    if target.exists():
        print(f"error: {target} already exists; choose a new folder", file=sys.stderr)
        return 2
    shutil.copytree(source, target, ignore=IGNORE)
    print(f"New project in {target}. Next: cd {target} && git init")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
