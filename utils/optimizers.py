"""The torch optimizers and lr schedulers a config may name, checked before anything is built."""

import inspect

import torch

from utils.errors import ConfigError


def torch_classes(module, base):
    """{name: class} of the public subclasses of `base` in a torch module (optimizers, schedulers)."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    }


OPTIMIZERS = torch_classes(torch.optim, torch.optim.Optimizer)
LR_SCHEDULERS = torch_classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
# Schedulers a JSON config cannot drive: they take Python functions or other scheduler objects, or
# need the monitored figure at every step.
NOT_FROM_JSON = {
    "LambdaLR": "takes a Python function (lr_lambda)",
    "MultiplicativeLR": "takes a Python function (lr_lambda)",
    "SequentialLR": "takes other scheduler objects",
    "ChainedScheduler": "takes other scheduler objects",
    "ReduceLROnPlateau": "needs the monitored figure at every step",
}


# Optimizers the trainer's step cannot drive.
NOT_STEPPED_BY_THE_TRAINER = {
    "LBFGS": "needs a closure that re-evaluates the loss at every step, which the trainer's step does not give",
    "SparseAdam": "takes sparse gradients only, and the models' embeddings give dense ones",
}


def check_optimizer_and_scheduler(config):
    """Build the configured optimizer (and lr scheduler, stepped once) on one stand-in parameter, so
    that arguments torch refuses are a ConfigError naming the key before anything is read."""
    import warnings

    if config.get("optimizer") is None:
        return
    name = config["optimizer"].get("type")
    if name in NOT_STEPPED_BY_THE_TRAINER:
        raise ConfigError(f"optimizer.type: {name} {NOT_STEPPED_BY_THE_TRAINER[name]}")
    cls, args = config.check_obj("optimizer", OPTIMIZERS, [])
    try:
        optimizer = cls([torch.nn.Parameter(torch.zeros(1))], **args)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"optimizer.args: {cls.__name__} refuses them: {e}") from None
    if config.get("lr_scheduler") is None:
        return
    cls, args = config.check_obj("lr_scheduler", LR_SCHEDULERS, None)
    check_scheduler(cls)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stepping before any optimizer step, on purpose
            cls(optimizer, **args).step()
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, KeyError) as e:
        raise ConfigError(f"lr_scheduler.args: {cls.__name__} refuses them: {e or type(e).__name__}") from None


def check_scheduler(cls):
    name = cls.__name__
    if name in NOT_FROM_JSON:
        usable = ", ".join(
            n for n in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "LinearLR")
        )
        raise ConfigError(
            f"lr_scheduler.type: {name} {NOT_FROM_JSON[name]}, which a JSON config cannot give (use e.g. {usable})"
        )
