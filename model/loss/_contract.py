"""What every loss checks first: the model gave it the tensors it reads."""

import torch

from utils.errors import ContractError


def needs(output, keys, loss):
    """Raise a ContractError naming the loss and the missing keys unless `output` is a dict holding
    a tensor under each of `keys`."""
    if not isinstance(output, dict):
        raise ContractError(
            f"{loss} needs the model's forward(batch) to return a dict with {', '.join(keys)}; "
            f"got a {type(output).__name__}"
        )
    missing = [key for key in keys if not isinstance(output.get(key), torch.Tensor)]
    if missing:
        raise ContractError(
            f"{loss} needs {', '.join(keys)} from the model's forward(batch); missing {', '.join(missing)} "
            f"(it returned {', '.join(sorted(output)) or 'an empty dict'})"
        )
