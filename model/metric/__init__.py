"""Ranking metrics: every public function defined in a module of this folder, named `name@K` in
the config's `metrics`. A new metric is a new file here.

A metric takes hits: (B, K) float, 1 where the item ranked r-th is held out for that user, and
n_relevant: (B,) the number of held-out items; it returns (B,) per-user values. The evaluation
(trainer/evaluation.py) computes one top-K for the largest K and slices it for the others.
"""

from utils.registry import discover_functions

METRICS = discover_functions(__name__, __path__, "metric")
