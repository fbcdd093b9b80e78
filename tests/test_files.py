"""Safe writes (utils/files.py)."""

import os
import signal
import time

import pytest

from utils.files import deferred_signals, write_atomic


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, even where the tests were started with SIGINT
    ignored (a background job of a shell script), and the previous one back after it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_second_interrupt_during_a_save_waits_for_it(tmp_path, python_sigint):
    target = tmp_path / "checkpoint.pth"

    def slow_write(f):
        f.write(b"a" * 1000)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the file is half written
        time.sleep(0.05)
        f.write(b"b" * 1000)

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, slow_write)
    assert target.read_bytes() == b"a" * 1000 + b"b" * 1000  # finished, then the interrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
    with deferred_signals():
        pass  # and the handlers are back: a later Ctrl-C interrupts at once
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
