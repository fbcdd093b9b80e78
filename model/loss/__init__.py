"""Losses: every public function defined in a module of this folder, by name (`loss.type`).

A loss is `fn(output, step, **loss.args) -> scalar tensor`: `output` is the dict the model's
`forward(batch)` returned, `step` the number of optimizer steps taken so far (for schedules such
as KL annealing). A new loss is a new file here.
"""

from utils.registry import discover_functions

LOSSES = discover_functions(__name__, __path__, "loss")
