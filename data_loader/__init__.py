"""Data loaders: every BaseDataLoader subclass in this folder, by class name; and `build_data`, the
one place a run's data is made from its config."""

from base.base_data_loader import BaseDataLoader
from data_loader.protocol import Protocol
from utils.registry import discover

DATA_LOADERS = discover(__name__, __path__, BaseDataLoader)


def check_data_config(config):
    """What build_data checks, without reading anything: the source's name and arguments, the
    `evaluation` section (a Protocol) and the `batches` section."""
    config.check_obj("data_loader", DATA_LOADERS)
    protocol = config.init_section("evaluation", Protocol)
    config._check_signature(
        BaseDataLoader.prepare, "batches", "batches", (None, protocol), {**config["batches"], "seed": 0}
    )
    return protocol


def build_data(config, seed):
    """The data source of `data_loader`, loaded, split by the `evaluation` protocol, with the
    `batches` settings and the batches' generator seeded by `seed`."""
    protocol = check_data_config(config)
    data = config.init_obj("data_loader", DATA_LOADERS)
    return data.prepare(protocol, seed=seed, **config["batches"])
