"""End to end: the README's and docs' commands run as written, and CI's selection of tests."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, copy_tracked

from utils.files import read_jsonl


def readme_section(title, document="README.md"):
    text = (ROOT / document).read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_readme_is_a_guide_read_once_and_its_commands_are_run_by_tests():
    """About 150-200 lines; the bash blocks are the install (run by .ci/run) and the two sections
    whose every line a slow test runs: Everyday use and A competition, start to finish."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    with_commands = [title for title in ("Quick start", "Everyday use", "A competition, start to finish")]
    sections = [part.split("\n", 1)[0] for part in text.split("\n## ")[1:] if "```bash" in part]
    assert sections == with_commands
    for document in ("config", "data", "results", "competition", "runs", "ngcf", "devices", "adding-a-module"):
        assert f"`docs/{document}.md`" in text and (ROOT / "docs" / f"{document}.md").is_file()


def code_blocks(section):
    """(language, lines) of each fenced block of a README section."""
    blocks, inside = [], None
    for line in section.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside = (line[3:].strip(), [])
            else:
                blocks.append(inside)
                inside = None
        elif inside is not None:
            inside[1].append(line)
    return blocks


def project_copy(tmp_path):
    """The project's tracked files in a new folder, with a small MovieLens-100K in its data/."""
    from conftest import write_movielens_100k

    project = copy_tracked(tmp_path / "project")
    write_movielens_100k(project / "data")
    return project


def shell(command, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": ""}
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_the_adding_a_model_recipe_works_as_written(tmp_path):
    project = project_copy(tmp_path)
    blocks = code_blocks(readme_section("Adding a model", "docs/adding-a-module.md"))
    files = [lines for language, lines in blocks if language == "python" and lines[0].startswith("# ")]
    assert [lines[0] for lines in files] == ["# model/biased_mf.py", "# tests/test_biased_mf.py"]
    for lines in files:
        (project / lines[0][2:]).write_text("\n".join(lines[1:]) + "\n")
    (change,) = [json.loads("\n".join(lines)) for language, lines in blocks if language == "json"]
    (commands,) = [lines for language, lines in blocks if language == "bash"]
    for line in commands:
        command = line.split("  #")[0].strip()
        result = shell(command, project)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command.startswith("cp "):  # "then change name and arch as above"
            path = project / "configs" / "biased_mf_ml100k.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **change}, indent=4))
        if "--list" in command:
            assert "BiasedMF" in result.stdout
    (metrics,) = (project / "saved" / "models" / "BiasedMF_ml-100k").glob("*/metrics.jsonl")
    assert [h["epoch"] for h in read_jsonl(metrics)] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_every_everyday_use_command_runs_in_order(tmp_path):
    project = project_copy(tmp_path)
    ((_, commands),) = [block for block in code_blocks(readme_section("Everyday use")) if block[0] == "bash"]
    for line in commands:
        command = line.split("  #")[0].strip()
        result = shell(command, project)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    runs = project / "saved" / "models" / "NGCF_ml-100k"
    assert (runs / "baseline" / "checkpoint-epoch30.pth").is_file() and (project / "recs.csv").is_file()
    assert json.loads((runs / "tuned" / "config.json").read_text())["_parent"]["checkpoint"].endswith("model_best.pth")


def test_the_github_workflow_selects_its_tests_without_the_data_sets(tmp_path):
    """The hosted runner has no MovieLens or Gowalla: the workflow's -m leaves those tests out, and
    CI=true must not stop the run for tests that are not selected (it does for selected ones)."""
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    selections = [
        line.split("pytest -m ")[1].strip().strip('"') for line in workflow.splitlines() if "pytest -m " in line
    ]
    assert selections == ["not slow and not movielens and not gowalla", "slow and not movielens and not gowalla"]
    env = {**os.environ, "CI": "true", "RECSYS_SHARED_DATA": str(tmp_path / "no-data")}
    for marks in selections:
        command = [sys.executable, "-m", "pytest", "-m", marks, "--collect-only", "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "tests collected" in result.stdout and "test_real_movielens_100k" not in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "movielens", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "CI=true but the real data is not at" in result.stdout + result.stderr
