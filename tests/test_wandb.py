"""The wandb writer (logger/wandb_writer.py): offline, disabled, and a server that cannot be reached."""

import errno
import sys
import types

import pytest
from conftest import one_line_error, run


def test_online_wandb_without_a_login_is_refused_before_anything_is_made(tiny_run, tmp_path, monkeypatch):
    config, path, runs = tiny_run
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    line = one_line_error(run("train.py", "-c", path))
    assert "wandb.mode: online needs a wandb login" in line
    assert not (tmp_path / "saved").exists()


class FakeWandb:
    """Stands for the wandb module: records each init's mode; `fail` says what an init raises."""

    Settings = dict

    def __init__(self, fail):
        self.fail, self.modes = fail, []

    def init(self, mode, **arguments):
        self.modes.append(mode)
        error = self.fail.get(mode)
        if error is not None:
            raise error
        return types.SimpleNamespace(id="r1", log=lambda *a, **k: None, finish=lambda **k: None)


@pytest.mark.parametrize(
    "fail, modes, run_kept, warning",
    [
        ({"online": RuntimeError("CommError")}, ["online", "offline"], True, "this run is recorded offline"),
        ({"online": TimeoutError("no reply")}, ["online", "offline"], True, "this run is recorded offline"),
        ({"online": PermissionError(errno.EACCES, "Permission denied")}, ["online"], False, "tracking is off"),
        ({"offline": PermissionError(errno.EACCES, "Permission denied")}, ["offline"], False, "tracking is off"),
    ],
)
def test_wandb_that_cannot_reach_its_server_or_write_never_stops_the_run(
    tmp_path, monkeypatch, caplog, fail, modes, run_kept, warning
):
    from logger.wandb_writer import WandbWriter

    fake = FakeWandb(fail)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    writer = WandbWriter({}, tmp_path, mode=modes[0])
    assert fake.modes == modes
    assert (writer.run is not None) == run_kept
    assert warning in caplog.text
    writer.log({"loss": 1.0}, step=1)  # a writer whose tracking is off still takes the calls
    writer.finish()
