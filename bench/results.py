"""The tables of bench/RESULTS.md, from the JSON files `python -m bench --out F.json` writes:

    python -m bench.results g1.json g2.json m1.json m2.json
    python -m bench.results previous=old.json current=new.json

prints a Markdown table of the figures and one of the ratios, a row per (file, model), in the
order given; a file given as LABEL=FILE has LABEL in a `code` column (e.g. two versions of the
code timed one after the other). Times are seconds.
"""

import json
import math
import sys
from pathlib import Path


def _cell(value, digits):
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ratio(a, b, digits):
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))) or not b or not math.isfinite(a / b):
        return "–"
    return f"{a / b:.{digits}f}"


def tables(results):
    labelled = any("label" in r for r in results)
    figures = [("label", "code", None)] if labelled else []
    figures += [
        ("dataset", "dataset", None),
        ("model", "model", None),
        ("impl", "impl", None),
        ("device", "device", None),
        ("threads", "threads", None),
        ("prep_s", "prep", 2),
        ("step_s", "step", 4),
        ("step_floor_s", "step floor", 4),
        ("step_baseline_s", "step baseline", 4),
        ("epoch_s", "epoch", 2),
        ("eval_s", "eval", 2),
        ("eval_floor_s", "eval floor", 2),
        ("eval_baseline_s", "eval baseline", 1),
        ("peak_rss_mb", "peak MB", 0),
    ]
    lines = ["| " + " | ".join(title for _, title, _ in figures) + " |", "|" + " --- |" * len(figures)]
    for r in results:
        impl = f"{r.get('impl', 'auto')} ({'fused' if r.get('fused', True) else 'reference'})"
        row = {**r, "impl": impl, "device": r.get("device", "cpu") + (" bf16" if r.get("amp") == "bf16" else "")}
        lines.append("| " + " | ".join(_cell(row[key], digits) for key, _, digits in figures) + " |")
    ratios = [  # (title, numerator, denominator, digits)
        ("step / floor", "step_s", "step_floor_s", 2),
        ("eval / floor", "eval_s", "eval_floor_s", 2),
        ("step baseline / step", "step_baseline_s", "step_s", 1),
        ("eval baseline / eval", "eval_baseline_s", "eval_s", 0),
        ("prep baseline / prep", "prep_baseline_s", "prep_s", 0),
    ]
    head = (["code"] if labelled else []) + ["dataset", "model", "impl", "threads", *(title for title, *_ in ratios)]
    lines += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        cells = [r["label"]] if labelled else []
        cells += [r["dataset"], r["model"], "fused" if r.get("fused", True) else "reference", str(r["threads"])]
        cells += [_ratio(r[top], r[bottom], digits) for _, top, bottom, digits in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(arguments):
    results = []
    for argument in arguments:
        label, _, path = argument.rpartition("=")
        for r in json.loads(Path(path).read_text()):
            results.append({**r, "label": label} if label else r)
    print(tables(results))


if __name__ == "__main__":
    main(sys.argv[1:])
