"""BERT4Rec: the cloze batches built on SequenceBatches, attention both ways that never reads padding,
[mask] appended at evaluation, exact resume."""

import numpy as np
import torch
from conftest import run, shipped_config, straight_and_resumed

from base.batching import MaskedSequenceBatches, SequenceBatches
from model.bert4rec import BERT4Rec


def model_for(dataset, **kwargs):
    torch.manual_seed(0)
    args = {"embed_dim": 8, "n_blocks": 2, "heads": 2, "max_len": 6, "dropout": 0.0, **kwargs}
    return BERT4Rec(dataset, **args).eval()


def test_the_cloze_batch_hides_items_of_the_users_latest_and_nothing_else(loo_loader):
    mask = loo_loader.dataset.n_items + 1
    batches = MaskedSequenceBatches(loo_loader, max_len=20, mask_prob=0.3, mask_token=mask)
    users = batches.users
    latest = SequenceBatches(loo_loader, max_len=20).last_items(users, 20)  # what SequenceBatches reads
    batch = batches.batch(users)
    items, targets = batch["items"].numpy(), batch["targets"].numpy()
    hidden = items == mask
    assert (targets[hidden] == latest[hidden]).all() and (targets[~hidden] == 0).all()
    assert (items[~hidden] == latest[~hidden]).all()  # the rest is the sequence as it was
    assert not (hidden & (latest == 0)).any() and hidden.any(axis=1).all()  # padding never, every user at least once
    share = hidden.sum() / (latest > 0).sum()
    assert 0.2 < share < 0.4  # about mask_prob of the real items
    # mask_last: those users have their last item hidden and nothing else (the task at evaluation)
    batch = MaskedSequenceBatches(loo_loader, max_len=20, mask_prob=0.3, mask_token=mask, mask_last=1.0).batch(users)
    expected = np.zeros_like(latest, dtype=bool)
    expected[:, -1] = True
    np.testing.assert_array_equal(batch["items"].numpy() == mask, expected)
    np.testing.assert_array_equal(batch["targets"].numpy()[:, -1], latest[:, -1])


def test_attention_goes_both_ways_and_never_reads_padding(loo_loader):
    model = model_for(loo_loader.dataset)
    items = torch.tensor([[0, 0, 3, 7, 9, 2]])
    base = model.encode(items)
    changed = items.clone()
    changed[0, 5] = 11  # a later item changes the earlier positions too (SASRec's would not)
    assert not torch.allclose(model.encode(changed)[0, 2], base[0, 2])
    with torch.no_grad():  # whatever padding's embedding and positions hold, the real outputs stay
        model.items.weight[0].normal_()
    torch.testing.assert_close(model.encode(items)[0, 2:], base[0, 2:])


def test_scores_are_the_mask_appended_after_the_history(loo_loader):
    ds = loo_loader.dataset
    model = model_for(ds)
    users = torch.arange(5)
    history = (ds.train + ds.valid)[:5]
    scores = model.full_scores(users, history)
    assert scores.shape == (5, ds.n_items)
    indptr, ordered = ds.in_time_order(history, np.arange(5))
    sequence = [*(ordered[indptr[1] - 5 : indptr[1]] + 1), ds.n_items + 1]  # the last 5 items, then [mask]
    h = model.encode(torch.tensor([sequence]))[0, -1]
    torch.testing.assert_close(scores[0], model.logits(h))
    assert not torch.allclose(scores, model.full_scores(users, ds.train[:5]))  # the history given decides


def test_trains_resumes_exactly_and_exports(tmp_path, tiny_data):
    config = shipped_config("bert4rec_ml100k", tiny_data)
    config["batches"]["batch_size"] = 16
    config["arch"]["args"].update(embed_dim=8, max_len=10)
    config["trainer"]["eval_period"] = 1
    runs, straight, _ = straight_and_resumed(tmp_path, config)
    assert straight["epoch"] == 4
    result = run("test.py", "-r", runs / "straight" / "model_best.pth", "--topk-out", tmp_path / "r.csv")
    assert result.returncode == 0, result.stderr


def test_scoring_computes_the_top_layer_at_the_mask_alone(loo_loader):
    """full_scores reads only the appended [mask]: encode(last=True) gives it, with padding in the batch."""
    model = model_for(loo_loader.dataset)
    mask = loo_loader.dataset.n_items + 1
    items = torch.tensor([[0, 0, 4, 9, 2, mask], [5, 1, 7, 3, 8, mask], [0, 0, 0, 0, 3, mask]])
    for grad in (True, False):  # without autograd torch runs its fused encoder layers: the same values
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(model.encode(items, last=True)[:, -1], model.encode(items)[:, -1])
