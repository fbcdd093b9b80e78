"""What the transformer sequence models (SASRec, BERT4Rec) require of their data and arguments alike."""

from utils import checks
from utils.errors import ConfigError


def check_transformer(name, dataset, embed_dim, n_blocks, heads, dropout):
    """A data set in time order and the arguments of a stack of attention blocks, or a ConfigError."""
    if dataset.order is None:
        raise ConfigError(
            f"arch.type: {name} needs each user's interactions in time order; this data set has none "
            "(a CSV needs data_loader.args.time_col)"
        )
    checks.positive_int("arch.args.embed_dim", embed_dim)
    checks.positive_int("arch.args.n_blocks", n_blocks)
    checks.positive_int("arch.args.heads", heads)
    if embed_dim % heads:
        checks.fail("arch.args.heads", f"a divisor of embed_dim ({embed_dim})", heads)
    checks.fraction("arch.args.dropout", dropout)
