"""Interrupts and errors end in one line, never a traceback (utils/errors.py, logger/)."""

import subprocess
import sys

import pytest
from conftest import ROOT, load_script, one_line_error, run, tiny_config, train_ok, write_config


def test_ctrl_c_in_test_py_and_a_planted_lock_link_are_no_traceback(tiny_run, tmp_path, monkeypatch):
    test_script = load_script("test.py")
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "a")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(test_script, "build_data", interrupted)
    result = run("test.py", "-r", runs / "a" / "model_best.pth")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted"
    monkeypatch.undo()
    (runs / "a" / ".lock").unlink(missing_ok=True)
    (runs / "a" / ".lock").symlink_to(tmp_path / "elsewhere")
    line = one_line_error(run("train.py", "-r", "latest", "-c", path, "--epochs", "3"))
    assert "cannot lock the run folder" in line and "(Too many levels of symbolic links)" in line


@pytest.mark.parametrize("script", ["train.py", "test.py", "sweep.py"])
def test_ctrl_c_while_a_script_imports_is_no_traceback(script):
    """SIGINT while torch or pandas, which take seconds, still load."""

    from conftest import send_signal

    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", script], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    for line in process.stderr:  # -X importtime writes a line as each module finishes loading
        if line.startswith("import time:") and "numpy" in line:  # numpy loads early inside torch and pandas
            break
    send_signal(process, "SIGINT")
    rest = [line for line in process.stderr.read().splitlines() if not line.startswith("import time:")]
    assert process.wait(timeout=60) == 130 and rest == ["interrupted"], rest


def test_the_last_line_of_info_log_is_the_error(tmp_path, tiny_data, monkeypatch):
    import base.checkpointer as checkpointer

    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=3)
    calls = {"n": 0}
    original = checkpointer.append_line

    def full_at_the_second(path, line):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        original(path, line)

    monkeypatch.setattr(checkpointer, "append_line", full_at_the_second)
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "l")
    assert result.returncode == 2
    log = (tmp_path / "saved" / "log" / config["name"] / "l" / "info.log").read_text().splitlines()
    assert log[-1].endswith(result.stderr.strip())
