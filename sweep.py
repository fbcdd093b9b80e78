"""A local hyperparameter grid, no server needed: python sweep.py configs/sweep.json

Runs train.py once per combination of the grid (sequentially, through the same --set overrides
a user would type), then writes one table: each run's settings, its best monitored figure and
epoch, and its wall time. The sweep file:

    {"config": "config.json",                       the base experiment
     "grid": {"optimizer.args.lr": [0.0005, 0.001], every combination of these
              "arch.args.embed_dim": [32, 64]},
     "set": {"trainer.epochs": 40},                 fixed overrides for every run
     "metric": "val_recall@20",                     the column to rank by (max)
     "out": "saved/sweeps/ngcf.csv"}
"""

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from utils.errors import ConfigError
from utils.util import read_json

ROOT = Path(__file__).resolve().parent


def run_sweep(sweep_path):
    sweep = read_json(sweep_path)
    for key in ("config", "grid", "metric", "out"):
        if key not in sweep:
            raise ConfigError(f"{sweep_path}: missing '{key}' (see python sweep.py --help)")
    base = read_json(sweep["config"])
    keys = list(sweep["grid"])
    rows = []
    for index, values in enumerate(itertools.product(*(sweep["grid"][k] for k in keys))):
        settings = dict(zip(keys, values))
        run_id = f"sweep-{Path(sweep_path).stem}-{index}"
        overrides = {**sweep.get("set", {}), **settings}
        command = [sys.executable, str(ROOT / "train.py"), "-c", sweep["config"], "--run-id", run_id]
        for key, value in overrides.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        save_dir = Path(overrides.get("trainer.save_dir", base["trainer"]["save_dir"]))
        metrics = save_dir / "models" / base["name"] / run_id / "metrics.jsonl"
        history = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
        best = max(history, key=lambda h: h.get(sweep["metric"], float("-inf")), default={})
        rows.append(
            {
                **settings,
                sweep["metric"]: best.get(sweep["metric"]),
                "best_epoch": best.get("epoch"),
                "epochs_run": len(history),
                "seconds": round(seconds, 1),
                "run_id": run_id,
                "status": "ok" if result.returncode == 0 else result.stderr.strip().splitlines()[-1],
            }
        )
        print(f"[{index + 1}] {settings} -> {sweep['metric']} = {rows[-1][sweep['metric']]}", flush=True)
    table = pd.DataFrame(rows).sort_values(sweep["metric"], ascending=False, na_position="last")
    out = Path(sweep["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
    print(f"written to {out}")
    return table


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    try:
        run_sweep(sys.argv[1])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
