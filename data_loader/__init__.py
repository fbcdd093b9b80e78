"""Data loaders: every BaseDataLoader subclass in this folder, by class name."""

from base.base_data_loader import BaseDataLoader
from utils.registry import discover

DATA_LOADERS = discover(__name__, __path__, BaseDataLoader)
