"""A local hyperparameter grid, no server needed: python sweep.py configs/sweep.json

Runs train.py once per combination of the grid (sequentially, through the same --set overrides
a user would type), shows a progress bar and one line per finished run, and rewrites one table
after every run: each run's settings, its best monitored figure and epoch, its wall time and
status. Ctrl-C stops cleanly with the table so far; `--resume` runs only what is not done yet.
The sweep file:

    {"config": "config.json",                       the base experiment
     "grid": {"optimizer.args.lr": [0.0005, 0.001], every combination of these
              "arch.args.embed_dim": [32, 64]},
     "set": {"trainer.epochs": 40},                 fixed overrides for every run
     "metric": "val_recall@20",                     the column to rank by
     "goal": "max",                                 max (default) or min (the default for "loss")
     "out": "saved/sweeps/ngcf.csv"}
"""

import signal
import sys

from utils.errors import exit_interrupted

if __name__ == "__main__":  # Ctrl-C while the imports below load ends quietly, as it does later
    signal.signal(signal.SIGINT, exit_interrupted)

import argparse
import itertools
import json
import subprocess
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from utils.errors import ConfigError
from utils.files import read_jsonl, write_atomic
from utils.parse_config import read_json
from utils.runs import RunFolder, RunLock

ROOT = Path(__file__).resolve().parent


def read_sweep(sweep_path):
    sweep = read_json(sweep_path)
    for key in ("config", "grid", "metric", "out"):
        if key not in sweep:
            raise ConfigError(f"{sweep_path}: missing '{key}' (see python sweep.py --help)")
    if not isinstance(sweep["grid"], dict) or not all(isinstance(v, list) and v for v in sweep["grid"].values()):
        raise ConfigError(f"{sweep_path}: grid: expected {{config key: [values, ...]}}")
    sweep.setdefault("goal", "min" if sweep["metric"] == "loss" else "max")  # a loss is best low
    if sweep["goal"] not in ("max", "min"):
        raise ConfigError(f'{sweep_path}: goal: expected "max" or "min", got {sweep["goal"]!r}')
    return sweep


def free_run(save_dir, name, stem, index):
    """The run folder of grid point `index`: sweep-<stem>-<index>, or with -2, -3, ... after it when
    an earlier sweep (interrupted, or finished and run again) left that folder: nothing is reused."""
    run_id = f"sweep-{stem}-{index}"
    attempt = 1
    while RunFolder(save_dir, name, run_id).path.exists():
        attempt += 1
        run_id = f"sweep-{stem}-{index}-{attempt}"
    return RunFolder(save_dir, name, run_id)


def run_one(sweep, sweep_path, index, settings, base):
    """Train one combination; its row of the table."""
    overrides = {**sweep.get("set", {}), **settings}
    save_dir = Path(overrides.get("trainer.save_dir", base["trainer"]["save_dir"]))
    run = free_run(save_dir, overrides.get("name", base["name"]), Path(sweep_path).stem, index)
    command = [sys.executable, str(ROOT / "train.py"), "-c", sweep["config"], "--run-id", run.run_id]
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    started = time.perf_counter()
    # its own process group: the sweep, not the run, takes the Ctrl-C (and then ends the run); the
    # run starts in this folder, as `python train.py` typed here would
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise
    seconds = time.perf_counter() - started
    run_id, metrics = run.run_id, run.metrics
    history = read_jsonl(metrics) if metrics.is_file() else []
    sign = 1 if sweep["goal"] == "max" else -1
    best = max(history, key=lambda h: sign * h.get(sweep["metric"], sign * float("-inf")), default={})
    status = "ok" if process.returncode == 0 else (stderr.strip().splitlines() or [f"exit {process.returncode}"])[-1]
    return {
        **settings,
        sweep["metric"]: best.get(sweep["metric"]),
        "best_epoch": best.get("epoch"),
        "epochs_run": len(history),
        "seconds": round(seconds, 1),
        "run_id": run_id,
        "status": status,
    }


def write_table(rows, sweep, out):
    table = pd.DataFrame(rows).sort_values(sweep["metric"], ascending=sweep["goal"] == "min", na_position="last")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: table.to_csv(f, index=False), binary=False)
    return table


def run_sweep(sweep_path, resume=False):
    sweep = read_sweep(sweep_path)
    sweep["config"] = str(Path(sweep["config"]).resolve())  # the file read here is the one trained
    base = read_json(sweep["config"])
    keys = list(sweep["grid"])
    grid = [dict(zip(keys, values)) for values in itertools.product(*(sweep["grid"][k] for k in keys))]
    out = Path(sweep["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out.parent, f".{out.name}.lock")
    if not lock.acquire():
        raise ConfigError(f"{out}: another sweep (pid {lock.holder()}) is writing this table; wait for it to end")
    try:
        return sweep_grid(sweep, sweep_path, base, grid, out, resume)
    finally:
        lock.release()


def sweep_grid(sweep, sweep_path, base, grid, out, resume):
    rows = []
    if resume and out.is_file():  # keep the finished runs, run the rest
        rows = [r for r in pd.read_csv(out).to_dict("records") if r.get("status") == "ok"]
    done = {grid_point(r["run_id"], Path(sweep_path).stem) for r in rows}
    bar = tqdm(total=len(grid), initial=len(done), desc="sweep", unit="run", dynamic_ncols=True)
    try:
        for index, settings in enumerate(grid):
            if index in done:
                continue
            row = run_one(sweep, sweep_path, index, settings, base)
            rows.append(row)
            write_table(rows, sweep, out)
            bar.update()
            bar.write(
                f"[{index + 1}/{len(grid)}] {settings} -> {sweep['metric']} = {row[sweep['metric']]} ({row['status']})"
            )
    except KeyboardInterrupt:
        bar.close()
        if rows:
            write_table(rows, sweep, out)
        print(
            f"\ninterrupted: {len(rows)} of {len(grid)} runs in {out}; go on with:\n"
            f"    python sweep.py {sweep_path} --resume",
            file=sys.stderr,
        )
        return None
    bar.close()
    table = write_table(rows, sweep, out)
    print(table.to_string(index=False))
    print(f"written to {out}")
    return table


def grid_point(run_id, stem):
    """The grid index of a run id sweep-<stem>-<index>[-<attempt>]."""
    return int(str(run_id).removeprefix(f"sweep-{stem}-").split("-")[0])


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", help="the sweep file (JSON)")
    parser.add_argument("--resume", action="store_true", help="keep the finished runs of the table; run the rest")
    args = parser.parse_args(argv)
    try:
        return 0 if run_sweep(args.sweep, args.resume) is not None else 130
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here each script handles Ctrl-C
    for name in ("SIGTERM", "SIGHUP"):  # ended like Ctrl-C: the run in progress is stopped, the table written
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    sys.exit(main(sys.argv[1:]))
