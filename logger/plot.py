"""Learning curves as a PNG in the run folder. matplotlib is optional: without it, no plot (said
at debug level only, so a run without it prints nothing about it)."""

from utils.files import read_jsonl, write_atomic


def plot_history(metrics_path, out_path, monitor_metric, logger, resumed_from=None, best_epoch=None):
    """Loss and the monitored metric per evaluated epoch, from metrics.jsonl, with the best epoch
    marked and, for a resumed run, where it resumed. Returns the path or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        logger.debug("matplotlib is not installed: no learning-curve plot (pip install matplotlib)")
        return None
    if not metrics_path.is_file():
        return None
    history = [h for h in read_jsonl(metrics_path) if isinstance(h, dict) and "epoch" in h]  # lines edited by hand too
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    names = [n for n in ["loss"] + ([monitor_metric] if monitor_metric and monitor_metric != "loss" else [])]
    names = [n for n in names if any(n in h for h in history)]
    if not names:
        return None
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        points = [(e, h[name]) for e, h in zip(epochs, history) if name in h]
        axis.plot(*zip(*points), marker="." if len(points) < 50 else None)
        if best_epoch:
            axis.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1, label=f"best: epoch {best_epoch}")
        if resumed_from:
            axis.axvline(
                resumed_from, color="tab:gray", linestyle=":", linewidth=1, label=f"resumed after {resumed_from}"
            )
        if best_epoch or resumed_from:
            axis.legend(fontsize="small")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    try:  # the same safe write as every run file: a temporary file renamed over the path
        write_atomic(out_path, lambda f: figure.savefig(f, format="png", dpi=100))
    except OSError as e:  # e.g. a folder in the way: the run itself has finished well
        logger.warning(f"the learning curves could not be written to {out_path} ({e.strerror or e})")
        return None
    finally:
        plt.close(figure)
    logger.info(f"Learning curves: {out_path}")
    return out_path
