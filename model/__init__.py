"""Models: every BaseModel subclass in this folder, by class name. Losses and metrics by function name."""

from base.base_model import BaseModel
from model import loss, metric
from utils.registry import discover, public_callables

MODELS = discover(__name__, __path__, BaseModel)
LOSSES = public_callables(loss)
METRICS = public_callables(metric)
