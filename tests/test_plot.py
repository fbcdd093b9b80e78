"""The training curves (logger/plot.py)."""

import json

import pytest


def test_a_line_without_an_epoch_in_metrics_does_not_fail_the_curves(tmp_path):
    import logging

    from logger.plot import plot_history

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n{}\n{"epoch": 2, "loss": 0.5}\n')
    plot_history(tmp_path / "metrics.jsonl", tmp_path / "curves.png", None, logging.getLogger("t"))


def test_curves_mark_the_best_epoch_and_the_resume(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import logging

    from matplotlib.axes import Axes

    from logger.plot import plot_history

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(json.dumps({"epoch": e, "loss": 1 / e, "val_recall@20": e % 3}) + "\n" for e in range(1, 7))
    )
    lines = []
    original = Axes.axvline
    monkeypatch.setattr(
        Axes, "axvline", lambda self, x, **kw: lines.append((x, kw["label"])) or original(self, x, **kw)
    )
    plot_history(
        metrics, tmp_path / "curves.png", "val_recall@20", logging.getLogger("t"), resumed_from=3, best_epoch=5
    )
    assert (5, "best: epoch 5") in lines and (3, "resumed after 3") in lines
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_go_through_the_safe_write_a_link_or_a_folder_in_the_way(tmp_path, caplog):
    """A link planted at curves.png is replaced, not followed; a folder there is a warning, not a failure."""
    pytest.importorskip("matplotlib")
    import logging

    from logger.plot import plot_history

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"epoch": e, "loss": 1 / e}) + "\n" for e in range(1, 4)))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "curves.png").symlink_to(outside)
    assert plot_history(metrics, tmp_path / "curves.png", None, logging.getLogger("t")) is not None
    assert outside.read_text() == "keep me" and not (tmp_path / "curves.png").is_symlink()
    (tmp_path / "curves.png").unlink()
    (tmp_path / "curves.png").mkdir()
    assert plot_history(metrics, tmp_path / "curves.png", None, logging.getLogger("t")) is None
    assert "the learning curves could not be written" in caplog.text
