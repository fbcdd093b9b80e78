"""NGCF is the paper's model: eq. 7 equals eq. 5-6, the Laplacian is right, dropouts behave.

These proofs run on the reference implementation (model/ngcf.py's own plain autograd);
tests/test_fast.py proves the fused kernels equal to it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import small_dataset

from model.graph import SparseGraph, normalized_adjacency
from model.loss.bpr import bpr_loss
from model.ngcf import NGCF


def test_laplacian_entries_symmetry_and_empty_rows():
    ds = small_dataset()
    lap = normalized_adjacency(ds.train, "symmetric").toarray()
    r = ds.train.toarray()
    deg_u, deg_i = r.sum(1), r.sum(0)
    assert np.allclose(lap, lap.T)
    assert not np.isnan(lap).any()
    n_u = ds.n_users
    for u in range(ds.n_users):
        for i in range(ds.n_items):
            expected = 1 / np.sqrt(deg_u[u] * deg_i[i]) if r[u, i] else 0.0
            assert lap[u, n_u + i] == pytest.approx(expected)
    assert np.count_nonzero(lap[:n_u, :n_u]) == 0 and np.count_nonzero(lap[n_u:, n_u:]) == 0
    assert not lap[0].any() and not lap[n_u + ds.n_items - 1].any()  # the empty user and item


def test_mean_adjacency_is_row_normalised_with_self_loops():
    ds = small_dataset()
    mean = normalized_adjacency(ds.train, "mean").toarray()
    np.testing.assert_allclose(mean.sum(1), 1.0, rtol=1e-6)  # every row, thanks to the self-loop
    assert (np.diag(mean) > 0).all()


@pytest.mark.parametrize("mode,dropout", [("symmetric", 0.0), ("symmetric", 0.3), ("mean", 0.0)])
def test_graph_product_and_its_gradient_match_dense(mode, dropout):
    """The plain product L x (and its autograd backward) with L's values as given: node dropout,
    or the row-normalised 'mean' matrix, make L non-symmetric."""
    ds = small_dataset()
    graph = SparseGraph(normalized_adjacency(ds.train, mode))
    assert graph.symmetric == (mode == "symmetric")
    torch.manual_seed(0)
    values = graph.values * (torch.rand(graph.nnz) >= dropout) / (1 - dropout)
    x = torch.randn(graph.shape[0], 4, requires_grad=True)
    probe = torch.randn(graph.shape[0], 4)
    (graph(x, values) * probe).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    dense = graph.to_dense(values)
    (dense @ x * probe).sum().backward()
    torch.testing.assert_close(graph(x, values), dense @ x)
    torch.testing.assert_close(grad_sparse, x.grad)


def per_node_propagation(model, ds):
    """Eq. 5-6 literally: for each node, its self message plus its neighbours' messages."""
    r = ds.train.toarray()
    n_u, n_i = ds.n_users, ds.n_items
    neighbours = [list(n_u + np.flatnonzero(r[u])) for u in range(n_u)] + [
        list(np.flatnonzero(r[:, i])) for i in range(n_i)
    ]
    ego = model.embedding.weight.detach()
    outputs = [ego]
    for w1, w2 in zip(model.w1, model.w2):
        new = []
        for node in range(n_u + n_i):
            e_u = ego[node]
            message = w1(e_u)  # m_{u<-u} = W1 e_u
            for other in neighbours[node]:
                norm = 1 / np.sqrt(len(neighbours[node]) * len(neighbours[other]))
                e_i = ego[other]
                message = message + norm * (w1(e_i) + w2(e_i * e_u))  # m_{u<-i}
            new.append(F.leaky_relu(message, 0.2))
        ego = torch.stack(new)
        outputs.append(ego)
    final = torch.cat(outputs, dim=1)
    return final[:n_u], final[n_u:]


@pytest.mark.cuda
def test_eq7_equals_the_per_node_messages(device):
    """The reference model's eq. 7 (matrix form) against a literal loop over eq. 5-6."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[6, 5, 4], impl="reference").eval()
    with torch.no_grad():
        expected_users, expected_items = per_node_propagation(model, ds)
        model = model.to(device)
        users, items = model.propagate()
    assert not model.fused
    torch.testing.assert_close(users.cpu(), expected_users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items.cpu(), expected_items, rtol=1e-5, atol=1e-6)
    # and the score is the inner product of the concatenations (eq. 10)
    scores = model.full_scores(torch.arange(ds.n_users, device=device), None)
    torch.testing.assert_close(scores.cpu(), expected_users @ expected_items.T, rtol=1e-4, atol=1e-5)


def test_the_layer_reads_like_eq7():
    """One layer of embeddings() is LeakyReLU((L + I) E W1 + (L E ⊙ E) W2), written with dense L."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[6], impl="reference").eval()
    lap = model.graph.to_dense()
    e = model.embedding.weight
    w1, w2 = model.w1[0].weight.T, model.w2[0].weight.T  # nn.Linear keeps W as (d_out, d_in)
    eye = torch.eye(lap.shape[0])
    expected = F.leaky_relu((lap + eye) @ e @ w1 + ((lap @ e) * e) @ w2, 0.2)
    torch.testing.assert_close(model.embeddings()[1], expected, rtol=1e-5, atol=1e-6)


def test_node_dropout_drops_edges_and_rescales():
    ds = small_dataset(n_users=200, n_items=300, empty_user=False, empty_item=False)
    model = NGCF(ds, embed_dim=8, layers=[8], node_dropout=0.1, impl="reference").train()
    torch.manual_seed(0)
    dropped = model.dropout(model.graph.values, 0.1)
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.01
    torch.testing.assert_close(dropped[kept], model.graph.values[kept] / 0.9)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_dropouts_are_on_in_training_and_off_in_eval(impl):
    ds = small_dataset()
    model = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.3, message_dropout=0.3, impl=impl)
    users = torch.arange(ds.n_users)
    model.train()
    assert not torch.equal(model.full_scores(users, None), model.full_scores(users, None))
    model.eval()
    torch.testing.assert_close(model.full_scores(users, None), model.full_scores(users, None))
    no_dropout = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0, impl=impl)
    no_dropout.load_state_dict(model.state_dict())
    no_dropout.train()  # without dropout, training mode gives the eval scores
    torch.testing.assert_close(no_dropout.full_scores(users, None), model.full_scores(users, None))


def test_message_dropout_is_standard_dropout():
    """Each entry of a layer's output is either dropped (0) or its eval value scaled by 1/(1-p)."""
    ds = small_dataset(n_users=60, n_items=80, empty_user=False, empty_item=False)
    model = NGCF(ds, embed_dim=16, layers=[16], node_dropout=0.0, message_dropout=0.3, impl="reference")
    model.eval()
    with torch.no_grad():
        reference = model.embeddings()[1]
        model.train()
        torch.manual_seed(0)
        out = model.embeddings()[1]
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.03  # 2,240 entries: ~4 standard deviations
    torch.testing.assert_close(out[~dropped], reference[~dropped] / 0.7)


@pytest.mark.parametrize(
    "option,value", [("adjacency", "mean"), ("activation", "separate"), ("normalize_layers", True), ("bias", True)]
)
def test_each_public_code_option_changes_the_output(option, value):
    ds = small_dataset()
    torch.manual_seed(0)
    paper = NGCF(ds, embed_dim=8, layers=[8, 8]).eval()
    variant = NGCF(ds, embed_dim=8, layers=[8, 8], **{option: value}).eval()
    variant.load_state_dict(paper.state_dict(), strict=False)
    if value is True and option == "bias":
        with torch.no_grad():
            for linear in (*variant.w1, *variant.w2):
                linear.bias.uniform_(-0.5, 0.5)
    users = torch.arange(ds.n_users)
    assert not torch.allclose(paper.full_scores(users, None), variant.full_scores(users, None))


def test_separate_activation_is_the_tensorflow_code():
    """activation='separate': LeakyReLU on each term, then the sum (the authors' TF code)."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[6], activation="separate").eval()
    assert not model.fused  # the fused kernel computes eq. 7 only: auto falls back to the reference code
    lap, e = model.graph.to_dense(), model.embedding.weight
    side = lap @ e
    expected = F.leaky_relu(model.w1[0](side + e), 0.2) + F.leaky_relu(model.w2[0](side * e), 0.2)
    torch.testing.assert_close(model.embeddings()[1], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_l2_on_embedding_vs_final_and_the_bpr_loss(impl):
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0, impl=impl)
    batch = {"users": torch.tensor([1, 2]), "pos_items": torch.tensor([0, 3]), "neg_items": torch.tensor([4, 5])}
    out = model(batch)
    table = model.embedding.weight
    users, pos, neg = batch["users"], batch["pos_items"], batch["neg_items"]
    expected = (
        table[users].pow(2).sum() + table[ds.n_users + pos].pow(2).sum() + table[ds.n_users + neg].pow(2).sum()
    ) / 2
    torch.testing.assert_close(out["l2"], expected)
    final = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0, l2_on="final", impl=impl)
    final.load_state_dict(model.state_dict())
    assert final(batch)["l2"] > out["l2"]
    # BPR: mean(-ln sigmoid(pos - neg)) + reg * l2 / batch
    loss = bpr_loss(out, 0, reg=0.1)
    manual = -torch.log(torch.sigmoid(out["pos_scores"] - out["neg_scores"])).mean() + 0.1 * out["l2"] / 2
    torch.testing.assert_close(loss, manual)


@pytest.mark.parametrize("normalize_layers", [False, True])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_training_scores_are_the_evaluation_scores(normalize_layers, impl):
    """The step's pos/neg scores (the batch's rows) are entries of full_scores (e* whole)."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[8, 6], normalize_layers=normalize_layers, impl=impl).eval()
    batch = {
        "users": torch.tensor([1, 2, 2, 5]),
        "pos_items": torch.tensor([0, 3, 3, 14]),
        "neg_items": torch.tensor([4, 5, 0, 1]),
    }
    out = model(batch)
    scores = model.full_scores(batch["users"], None)
    torch.testing.assert_close(out["pos_scores"], scores[torch.arange(4), batch["pos_items"]])
    torch.testing.assert_close(out["neg_scores"], scores[torch.arange(4), batch["neg_items"]])


def test_the_model_file_reads_like_the_paper():
    """model/ngcf.py holds the model alone: no autograd.Function, no private imports, the equations
    numbered, and short enough to read in a few minutes."""
    source = (__import__("pathlib").Path(__file__).parents[1] / "model" / "ngcf.py").read_text()
    assert "autograd.Function" not in source and "import _" not in source and "from model.graph import _" not in source
    for equation in ("eq. 5", "eq. 7", "eq. 9", "eq. 10", "eq. 11"):
        assert equation in source, equation
    assert len(source.splitlines()) < 200
