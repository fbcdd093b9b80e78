"""Models: every BaseModel subclass in a module of this folder, by class name (`arch.type`).
Losses (model/loss/) and metrics (model/metric/) are found the same way, by function name."""

from base.base_model import BaseModel
from model.loss import LOSSES
from model.metric import METRICS
from utils.registry import discover

MODELS = discover(__name__, __path__, BaseModel)

__all__ = ["LOSSES", "METRICS", "MODELS"]
