"""What train.py and test.py share: the torch classes a config may name, and the error exit."""

import inspect
import sys

import torch

from utils.errors import UserError


def torch_classes(module, base):
    """{name: class} of the public subclasses of `base` in a torch module (optimizers, schedulers)."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    }


OPTIMIZERS = torch_classes(torch.optim, torch.optim.Optimizer)
LR_SCHEDULERS = torch_classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)


def run_main(main, args):
    """Run main(args); a user mistake becomes one line on stderr and exit code 2."""
    try:
        main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
