"""Speed benchmark: the template's fast paths against their bare floor and a plain baseline.

    python -m bench --dataset ml-100k --threads 1 --out results.json
    python -m bench --dataset gowalla --threads 2 --data-dir ../shared/data --impl reference
    python -m bench --dataset ml-100k --threads 2 --models NGCF --compile
    python -m bench --dataset gowalla --device cuda --amp bf16
    python -m bench --dataset synthetic-competition          (every model at a competition's size: bench/scale.py)

Prints one table and writes the same figures as JSON: one object per model (NGCF and LightGCN,
paper settings: batch 1024, d = 64, 3 layers). Times are seconds; each model runs in its own
process so that `peak_rss_mb` is that model's peak (on CUDA, the peak of the GPU memory torch
allocated). With --compile the training step runs the model through torch.compile (it needs a
C++ compiler) and `compiled` is true. On CUDA the CPU baselines are not run (NaN in the table).
bench/RESULTS.md holds the figures measured so far and how they were made (python -m bench.results).
"""

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

try:
    import resource  # POSIX only
except ImportError:  # Windows: no peak RSS figure
    resource = None

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synchronized(fn):
    """fn, then a wait for the GPU to finish what it queued (no-op without CUDA work)."""

    def call():
        fn()
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    return call


def timed(fn, repeat=1):
    """Median wall time of `repeat` calls (after the first call, which warms caches, when repeat > 1)."""
    fn = synchronized(fn)
    if repeat > 1:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_alternately(fns, repeat):
    """Median of `repeat` calls of each function, called in turn (after one warm-up call each), so
    that a change in the machine's speed during the run affects them alike."""
    fns = [synchronized(fn) for fn in fns]
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def peak_rss_mb():
    """The process's peak resident memory in MB (ru_maxrss is in KB on Linux, bytes on macOS), or
    NaN where the platform has no getrusage."""
    if resource is None:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mb():
    """The process's resident memory now in MB, where /proc has it (Linux), else NaN."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, AttributeError):
        return float("nan")


def reset_peak_rss():
    """Restart peak_rss_mb() from the memory resident now (Linux's clear_refs); False where the
    platform cannot, and the peak then stays the whole process's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def load(dataset, data_dir):
    """The template's way: a data loader (files -> splits) and the normalised adjacency."""
    from data_loader.benchmark import BenchmarkDataLoader
    from data_loader.movielens import MovieLensDataLoader
    from data_loader.protocol import Protocol
    from model.graph import SparseGraph, normalized_adjacency

    if dataset == "gowalla":
        loader = BenchmarkDataLoader(str(data_dir / "gowalla")).prepare(Protocol("source", 0, 0.0), batch_size=1024)
    else:
        loader = MovieLensDataLoader(str(data_dir), download=False, cache=False)
        loader.prepare(Protocol("random", 0.2, 0.0), batch_size=1024)
    graph = SparseGraph(normalized_adjacency(loader.dataset.train))
    return loader, graph


def run_model(
    dataset,
    model_name,
    threads,
    data_dir,
    eval_baseline_users,
    gowalla_steps,
    compile_step,
    impl,
    device,
    amp,
    allocator,
    queue,
):
    import numpy as np
    import torch

    from base.batching import PairBatches
    from bench import baseline, floor
    from model import METRICS
    from model.lightgcn import LightGCN
    from model.loss.bpr import bpr_loss
    from model.ngcf import NGCF
    from trainer.evaluation import evaluate, parse_metrics
    from utils.device import configure_device, keep_freed_memory, resolve_device

    device = resolve_device(device)
    on_cpu = device.type == "cpu"
    if on_cpu and allocator == "keep":
        keep_freed_memory()  # as train.py does on the CPU; it helps the floor and the baselines alike
    configure_device(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    prep_s = timed(lambda: load(dataset, data_dir))
    loader, _ = load(dataset, data_dir)
    ds = loader.dataset

    model = NGCF(ds, impl=impl) if model_name == "NGCF" else LightGCN(ds, n_layers=3, impl=impl)
    model = model.to(device)
    model.on_device(device)
    pairs = PairBatches(loader)
    reg = 1e-5 if model_name == "NGCF" else 1e-4
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the shipped configs
    # torch.compile: dynamo cuts NGCF's forward into the pieces it can trace (the CSR tensors, the
    # numpy masks and .item() calls break it: NGCF is 12 graphs) and compiles those, the rest runs eagerly.
    forward = torch.compile(model) if compile_step else model

    def step(forward=forward):
        users, pos, neg = (torch.from_numpy(a).to(device, non_blocking=True) for a in pairs.sample(1024))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = bpr_loss(forward({"users": users, "pos_items": pos, "neg_items": neg}), 0, reg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # The template's own work first, training and one evaluation, so that the peak memory read
    # next is its own: the floors and baselines below allocate inputs and score blocks of theirs.
    model.train()
    for _ in range(10 if compile_step else 3):  # warm-up: first-touch allocations, caches, compilation
        step()
    n_batches = len(pairs)
    if dataset == "gowalla":  # a fixed number of steps, scaled to the epoch's batch count
        epoch_s = timed(lambda: [step() for _ in range(gowalla_steps)]) * n_batches / gowalla_steps
        epoch_note = f"{gowalla_steps} of {n_batches} steps, scaled"
    else:
        epoch_s = timed(lambda: [step() for _ in range(n_batches)], repeat=5)  # the machine's speed varies
        epoch_note = f"{n_batches} steps, median of 5 epochs"
    metrics = parse_metrics(["recall@20", "ndcg@20", "precision@20", "hit@20"], METRICS)
    test = loader.evaluation("test")
    evaluate(model, test, metrics, device)
    peak_rss = peak_rss_mb() if on_cpu else torch.cuda.max_memory_allocated(device) / 2**20

    model.train()
    repeat = 9 if dataset == "gowalla" else 30
    users, pos, neg = (torch.from_numpy(a).to(device) for a in pairs.sample(1024))
    batch_nodes = torch.cat([users, ds.n_users + pos, ds.n_users + neg])  # a batch's rows, for the floor
    steps = [step, floor.step_ops(model, model_name, batch_nodes)]
    if compile_step:  # the same step without torch.compile, timed in turn with it
        steps.append(lambda: step(model))
    step_s, step_floor_s, *step_eager_s = timed_alternately(steps, repeat)

    model.eval()
    eval_s, eval_floor_s = timed_alternately(
        [
            lambda: (model.train(False), evaluate(model, test, metrics, device)),  # train(False): propagate again
            lambda: floor.evaluation(model, test),
        ],
        1 if dataset == "gowalla" else 5,
    )

    sample = np.random.default_rng(0).choice(test.users, size=min(eval_baseline_users, len(test.users)), replace=False)
    prep_baseline_s = step_baseline_s = eval_baseline_s = float("nan")
    if on_cpu:  # the plain reference-code ways, on the CPU as they were written
        prep_baseline_s = timed(lambda: baseline.prepare(dataset, data_dir))
        model.train()
        plain_adam = torch.optim.Adam(model.parameters(), lr=1e-3)  # the references' default Adam
        step_baseline_s = timed(
            lambda: baseline.step(model, model_name, loader.dataset.train, plain_adam, reg),
            3 if dataset == "gowalla" else 10,
        )
        model.eval()
        eval_baseline_s = timed(lambda: baseline.evaluate(model, test, sample)) * len(test.users) / len(sample)

    figures = {
        "dataset": dataset,
        "model": model_name,
        "threads": threads,
        "compiled": compile_step,
        "prep_s": prep_s,
        "prep_baseline_s": prep_baseline_s,
        "step_s": step_s,
        "step_floor_s": step_floor_s,
        "step_baseline_s": step_baseline_s,
        "epoch_s": epoch_s,
        "epoch_note": epoch_note,
        "eval_s": eval_s,
        "eval_floor_s": eval_floor_s,
        "eval_baseline_s": eval_baseline_s,
        "eval_baseline_users": int(len(sample)),
        "peak_rss_mb": peak_rss,
        "impl": impl,
        "fused": bool(model.fused),
        "device": device.type,
        "amp": amp,
        "allocator": allocator if on_cpu else "-",
    }
    if compile_step:
        figures["step_eager_s"] = step_eager_s[0]
    queue.put(figures)


def print_table(results):
    columns = [
        ("model", "{}"),
        ("threads", "{}"),
        ("compiled", "{}"),
        ("fused", "{}"),
        ("prep_s", "{:.2f}"),
        ("prep_baseline_s", "{:.2f}"),
        ("step_s", "{:.4f}"),
        ("step_floor_s", "{:.4f}"),
        ("step_baseline_s", "{:.4f}"),
        ("epoch_s", "{:.2f}"),
        ("eval_s", "{:.2f}"),
        ("eval_floor_s", "{:.2f}"),
        ("eval_baseline_s", "{:.1f}"),
        ("peak_rss_mb", "{:.0f}"),
    ]
    rows = [[fmt.format(r[name]) for name, fmt in columns] for r in results]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, (name, _) in enumerate(columns)]
    print(f"dataset: {results[0]['dataset']}   epoch: {results[0]['epoch_note']}")
    print("  ".join(name.rjust(w) for (name, _), w in zip(columns, widths)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    print(
        "ratios: "
        + "; ".join(
            f"{r['model']}: step/floor {r['step_s'] / r['step_floor_s']:.2f}, "
            f"step baseline/step {r['step_baseline_s'] / r['step_s']:.1f}, "
            f"eval/floor {r['eval_s'] / r['eval_floor_s']:.2f}, "
            f"eval baseline/eval {r['eval_baseline_s'] / r['eval_s']:.0f}, "
            f"prep baseline/prep {r['prep_baseline_s'] / r['prep_s']:.1f}"
            + (f", compiled step/eager step {r['step_s'] / r['step_eager_s']:.2f}" if r["compiled"] else "")
            for r in results
        )
    )


def main():
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--dataset")
    if (first.parse_known_args()[0].dataset or "").startswith("synthetic-"):  # the scale benchmark
        from bench import scale

        return scale.main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        choices=("ml-100k", "gowalla", "synthetic-small", "synthetic-competition", "synthetic-20m"),
        default="ml-100k",
        help="synthetic-*: every model at a competition's size (bench/scale.py)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data-dir",
        default=str(ROOT.parent / "shared" / "data"),
        help="folder holding ml-100k/ and gowalla/ (default: ../shared/data)",
    )
    parser.add_argument("--models", default="NGCF,LightGCN")
    parser.add_argument("--eval-baseline-users", type=int, default=300)
    parser.add_argument("--gowalla-steps", type=int, default=10)
    parser.add_argument(
        "--compile", action="store_true", help="train through torch.compile(model) (needs a C++ compiler)"
    )
    parser.add_argument(
        "--impl", choices=("auto", "reference", "fused"), default="auto", help="the models' arch.args.impl"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off", help="bf16 autocast (CUDA)")
    parser.add_argument(
        "--allocator",
        choices=("keep", "default"),
        default="keep",
        help="CPU: keep freed memory for reuse, as train.py does (keep), or glibc's default",
    )
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()

    context = mp.get_context("spawn")
    results = []
    for name in args.models.split(","):
        queue = context.Queue()
        process = context.Process(
            target=run_model,
            args=(
                args.dataset,
                name,
                args.threads,
                Path(args.data_dir),
                args.eval_baseline_users,
                args.gowalla_steps,
                args.compile,
                args.impl,
                args.device,
                args.amp,
                args.allocator,
                queue,
            ),
        )
        process.start()
        results.append(queue.get())
        process.join()
    print_table(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
