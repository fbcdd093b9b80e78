"""NeuMF: a pointwise model on k sampled negatives per positive, with binary cross-entropy."""

import torch
import torch.nn.functional as F
from conftest import run, shipped_config, small_dataset, straight_and_resumed

from model.loss.bce import bce_loss
from model.neumf import NeuMF
from utils.files import read_jsonl


def test_full_scores_are_the_pair_scores():
    """full_scores, its towers and first MLP layer factored, gives score() of every (user, item),
    in one block of users or several."""
    ds = small_dataset(n_users=9, n_items=7)
    torch.manual_seed(0)
    model = NeuMF(ds, embed_dim=4, mlp_layers=[6, 5, 3], negatives=2).eval()
    users = torch.tensor([0, 4, 8])
    for table in (model.gmf_user, model.gmf_item, model.mlp_user, model.mlp_item):
        torch.nn.init.normal_(table.weight)  # scores far from 0, where a wrong term would show
    pairs = model.score(users.repeat_interleave(7), torch.arange(7).repeat(3)).view(3, 7)
    for per_block in (None, 14):  # one block; blocks of 2 users
        torch.testing.assert_close(model.full_scores(users, ds.train[[0, 4, 8]], pairs=per_block), pairs)


def test_batches_have_k_negatives_and_the_loss_is_bce():
    ds = small_dataset(n_users=9, n_items=7)
    torch.manual_seed(0)
    model = NeuMF(ds, embed_dim=4, mlp_layers=[6, 3], negatives=3)
    batch = {
        "users": torch.tensor([1, 2]),
        "pos_items": torch.tensor([0, 1]),
        "neg_items": torch.tensor([[2, 3, 4], [5, 6, 0]]),
    }
    out = model(batch)
    assert out["pos_scores"].shape == (2,) and out["neg_scores"].shape == (2, 3)
    logits = torch.cat([out["pos_scores"], out["neg_scores"].flatten()])
    labels = torch.cat([torch.ones(2), torch.zeros(6)])
    torch.testing.assert_close(bce_loss(out, 0), F.binary_cross_entropy_with_logits(logits, labels))


def test_trains_resumes_exactly_and_exports(tmp_path, tiny_data):
    config = shipped_config("pointwise_ml100k", tiny_data)
    config["batches"]["batch_size"] = 64
    config["arch"]["args"].update(embed_dim=8, mlp_layers=[16, 8])
    runs, _, _ = straight_and_resumed(tmp_path, config)
    history = read_jsonl(runs / "straight" / "metrics.jsonl")
    assert history[-1]["loss"] < history[0]["loss"]
    assert run("test.py", "-r", runs / "straight" / "model_best.pth", "--topk-out", tmp_path / "r.csv").returncode == 0
