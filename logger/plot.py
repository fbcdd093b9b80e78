"""Learning curves as a PNG in the run folder. matplotlib is optional: without it, a log line."""

import json


def plot_history(metrics_path, out_path, monitor_metric, logger):
    """Loss and the monitored metric per evaluated epoch, from metrics.jsonl. Returns the path or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no learning-curve plot (pip install matplotlib)")
        return None
    if not metrics_path.is_file():
        return None
    history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    names = ["loss"] + ([monitor_metric] if monitor_metric and monitor_metric != "loss" else [])
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        axis.plot(epochs, [h.get(name) for h in history], marker="." if len(epochs) < 50 else None)
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    logger.info(f"Learning curves: {out_path}")
    return out_path
