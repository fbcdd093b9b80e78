"""The batching pieces over any data source, and the time order they read: pairs, user rows, sequences."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import prepared

from base.batching import PairBatches, SequenceBatches, UserRowBatches
from data_loader.csv_loader import CSVDataLoader
from data_loader.movielens import MovieLensDataLoader


def csv_loader(tmp_path, rows, **kwargs):
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user", "item", "time"]).to_csv(path, index=False)
    protocol = {"split": "leave_one_out", "batch_size": 4, **kwargs}
    return prepared(CSVDataLoader(str(tmp_path), "log.csv", time_col="time", cache=False), **protocol)


def test_each_users_history_is_kept_in_time_order_ties_in_input_order(tmp_path):
    rows = [("a", "x", 5), ("a", "y", 1), ("a", "z", 3), ("a", "w", 3), ("b", "x", 2), ("b", "v", 1)]
    loader = csv_loader(tmp_path, rows, split="random", valid=0.0, test=0.0)
    ds = loader.dataset
    indptr, items = ds.in_time_order(ds.train)
    names = [[ds.item_ids[i] for i in items[indptr[u] : indptr[u + 1]]] for u in range(ds.n_users)]
    assert dict(zip(ds.user_ids, names)) == {"a": ["y", "z", "w", "x"], "b": ["v", "x"]}  # z before w: input order
    assert ds.order.nnz == len(rows)  # O(interactions): one position per interaction


def test_leave_one_out_takes_the_latest_by_the_same_order(tmp_path):
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("a", "w", 3)]  # z and w tie: w came later
    ds = csv_loader(tmp_path, rows).dataset
    item = {name: i for i, name in enumerate(ds.item_ids)}
    assert ds.test[0, item["w"]] == 1 and ds.valid[0, item["z"]] == 1


def test_sequence_targets_follow_their_inputs_and_negatives_are_unseen(tiny_data):
    loader = prepared(
        MovieLensDataLoader(str(tiny_data), download=False, cache=False), split="leave_one_out", batch_size=8
    )
    ds = loader.dataset
    batches = SequenceBatches(loader, max_len=12, negatives=1)
    indptr, ordered = ds.in_time_order(ds.train)
    train = ds.train.toarray() > 0
    seen_users = []
    for batch in batches:
        items, targets, negatives = batch["items"].numpy(), batch["targets"].numpy(), batch["negatives"].numpy()
        for row, user in enumerate(batch["users"].numpy()):
            sequence = list(ordered[indptr[user] : indptr[user + 1]] + 1)
            n = min(len(sequence) - 1, 12)
            assert (items[row, : 12 - n] == 0).all() and (targets[row, : 12 - n] == 0).all()  # left padding
            assert list(items[row, 12 - n :]) == sequence[-n - 1 : -1]  # the latest inputs, in time order
            assert list(targets[row, 12 - n :]) == sequence[-n:]  # each followed by the next item
            real = targets[row] > 0
            assert (negatives[row][~real] == 0).all()
            assert not train[user, negatives[row][real] - 1].any()  # never one of the user's items
        seen_users += list(batch["users"].numpy())
    assert sorted(seen_users) == sorted(batches.users)  # each user once an epoch
    assert len(batches) == -(-len(batches.users) // 8)


def test_user_rows_visit_every_user_once_and_shards_agree(tiny_data):
    loader = prepared(MovieLensDataLoader(str(tiny_data), download=False, cache=False), batch_size=7)
    rows = UserRowBatches(loader)
    first = [b["users"] for b in rows]
    everyone = torch.cat(first).numpy()
    assert sorted(everyone) == sorted(rows.users)
    np.testing.assert_array_equal(next(iter(rows))["rows"].numpy(), loader.dataset.train[first[0].numpy()].toarray())
    rows.set_epoch(2)
    assert not torch.equal(torch.cat([b["users"] for b in rows]), torch.cat(first))  # another shuffle
    # under torchrun each rank takes its share of the same permutation, as many as every other rank
    shares = []
    for rank in range(3):
        loader.rank, loader.world_size = rank, 3
        rows.set_epoch(2)
        shares.append(torch.cat([b["users"] for b in rows]).numpy())
    assert len({len(s) for s in shares}) == 1 and set(np.concatenate(shares)) == set(rows.users)


@pytest.mark.parametrize("piece", ["pairs", "rows", "sequences"])
def test_resuming_the_generator_repeats_the_batches(tiny_data, piece):
    loader = prepared(
        MovieLensDataLoader(str(tiny_data), download=False, cache=False), split="leave_one_out", batch_size=8
    )
    batches = {
        "pairs": lambda: PairBatches(loader, negatives=3),
        "rows": lambda: UserRowBatches(loader),
        "sequences": lambda: SequenceBatches(loader, 10),
    }[piece]()
    batches.set_epoch(3)
    state = loader.state_dict()
    first = list(batches)
    loader.load_state_dict(state)
    again = list(batches)
    for a, b in zip(first, again):
        for key in a:
            assert torch.equal(a[key], b[key]), key
