"""Trainers: every BaseTrainer subclass in this folder, by class name."""

from base.base_trainer import BaseTrainer
from utils.registry import discover

TRAINERS = discover(__name__, __path__, BaseTrainer)
