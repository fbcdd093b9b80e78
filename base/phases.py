"""Training in phases, each with its own optimizer.

A model that alternates what it updates (RecVAE: its encoder for a few passes over the data, then
its decoder) returns its phases from `phases()`. train.py builds one optimizer per phase from the
config's `optimizer` section, over that phase's parameters; an epoch is each phase in turn, its
`passes` over the training batches, the model told by `begin_phase(name)` and only that phase's
optimizer stepping. A model without phases trains as before: one optimizer, one pass an epoch.
"""

import collections
from dataclasses import dataclass


@dataclass
class Phase:
    name: str
    parameters: list  # what this phase's optimizer updates
    passes: int = 1  # passes over the training batches, each epoch


class PhaseOptimizers:
    """The phases' optimizers, seen by the trainer as one: `step` steps the active phase's only,
    `zero_grad` clears every gradient, and the state (checkpoints, resume) holds them all."""

    def __init__(self, optimizers):
        self.optimizers = list(optimizers)
        self.active = 0  # the phase being trained (set by the trainer)

    @property
    def param_groups(self):
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self):
        """Every parameter's state, to read: plain dicts, since looking a key up in torch's
        defaultdict would add it to that optimizer."""
        return collections.ChainMap(*(dict(optimizer.state) for optimizer in self.optimizers))

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.optimizers[self.active].step()

    def state_dict(self):
        return {"phases": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state):
        phases = state.get("phases") if isinstance(state, dict) else None
        if not isinstance(phases, list) or len(phases) != len(self.optimizers):
            raise ValueError(f"expected the states of {len(self.optimizers)} phase optimizers")
        for optimizer, saved in zip(self.optimizers, phases):
            optimizer.load_state_dict(saved)
