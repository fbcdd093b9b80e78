"""NGCF is the paper's model: eq. 7 equals eq. 5-6, the Laplacian is right, dropouts behave."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from base.interactions import Interactions, to_csr
from model.graph import SparseGraph, batch_rows, keep_mask, normalized_adjacency, pair_scores, random_words
from model.loss import bpr_loss
from model.ngcf import NGCF


def small_dataset(n_users=12, n_items=15, seed=0, empty_user=True, empty_item=True):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    if empty_user:
        dense[0] = False  # a user without training interactions
    if empty_item:
        dense[:, -1] = False  # an item nobody has
    users, items = np.nonzero(dense)
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    return Interactions(
        n_users, n_items, to_csr(users, items, n_users, n_items), empty, empty, np.arange(n_users), np.arange(n_items)
    )


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
def test_sparse_product_and_its_gradient_match_dense(mode, dropout):
    """With node dropout, or the row-normalised 'mean' matrix, A is not symmetric: the backward
    must use the true transpose."""
    ds = small_dataset()
    graph = SparseGraph(normalized_adjacency(ds.train, mode))
    assert graph.symmetric == (mode == "symmetric")
    x = torch.randn(graph.shape[0], 4, requires_grad=True)
    probe = torch.randn(graph.shape[0], 4)
    torch.manual_seed(0)
    weights = graph.dropout(dropout) if dropout else None
    (graph(x, weights) * probe).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    dense = graph.to_dense(weights[0] if weights else None)
    (dense @ x * probe).sum().backward()
    torch.testing.assert_close(graph(x, weights), dense @ x)
    torch.testing.assert_close(grad_sparse, x.grad)


@pytest.mark.parametrize(
    "mode,index_dtype", [("symmetric", torch.int32), ("mean", torch.int32), ("symmetric", torch.int64)]
)
def test_row_block_is_the_rows_of_the_matrix_and_their_transpose(mode, index_dtype):
    """With 32-bit indices (every graph under 2^31 non-zeros) and 64-bit ones (larger graphs)."""
    ds = small_dataset()
    graph = SparseGraph(normalized_adjacency(ds.train, mode))
    assert graph.crow.dtype == torch.int32
    for name in ("crow", "col", "crow_t", "col_t", "perm_t"):
        setattr(graph, name, getattr(graph, name).to(index_dtype))
    n = graph.shape[0]
    rows = torch.tensor([0, 2, 11, 12, n - 1])  # user 0 and the last item have no interactions
    torch.manual_seed(0)
    weights = graph.dropout(0.3)
    dense = graph.to_dense(weights[0])
    block, transposed = graph.row_block(rows, weights)
    assert block.shape == (5, n) and transposed.shape == (n, 5)
    torch.testing.assert_close(block.to_dense(), dense[rows])
    torch.testing.assert_close(transposed.to_dense(), dense[rows].T)
    x = torch.randn(n, 3, requires_grad=True)
    torch.testing.assert_close(graph(x, weights), dense @ x)  # the whole product, with these indices too
    probe = torch.randn(5, 3)
    (graph.rows_product(x, (block, transposed)) * probe).sum().backward()
    torch.testing.assert_close(x.grad, dense[rows].T @ probe)


def test_batch_rows_are_the_sorted_distinct_nodes():
    nodes = torch.tensor([7, 3, 7, 0, 12, 3, 3])
    for n, few in ((80, True), (15, False)):  # 4 distinct of 80 nodes: few; of 15: over the share
        rows, inverse, is_few = batch_rows(nodes, n)
        torch.testing.assert_close(rows, torch.unique(nodes))
        torch.testing.assert_close(rows[inverse], nodes)
        assert is_few == few
    assert batch_rows(torch.arange(20), 80)[2] and not batch_rows(torch.arange(21), 80)[2]  # the share is 1/4


def test_pair_scores_equal_the_concatenation_and_its_gradients():
    """pair_scores gives autograd's scores and gradients of cat + split + row-wise dot products."""
    torch.manual_seed(0)
    batch = 5
    leaves = [torch.randn(3 * batch, d, requires_grad=True) for d in (8, 5, 7)]
    layers = leaves[:2] + [leaves[2][:, 2:5]]  # the last one strided
    g_pos, g_neg = torch.randn(batch), torch.randn(batch)
    pos, neg = pair_scores(batch, layers)
    fused = torch.autograd.grad((pos * g_pos + neg * g_neg).sum(), leaves)
    u, p, n = torch.cat(layers, dim=1).split(batch)
    expected_pos, expected_neg = (u * p).sum(dim=1), (u * n).sum(dim=1)
    expected = torch.autograd.grad((expected_pos * g_pos + expected_neg * g_neg).sum(), leaves)
    torch.testing.assert_close(pos, expected_pos)
    torch.testing.assert_close(neg, expected_neg)
    for got, want in zip(fused, expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("normalize_layers", [False, True])
def test_training_scores_are_the_evaluation_scores(normalize_layers):
    """The step's pos/neg scores (batch rows, pair_scores) are entries of full_scores (e* whole)."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[8, 6], normalize_layers=normalize_layers).eval()
    users, pos, neg = torch.tensor([1, 2, 2, 5]), torch.tensor([0, 3, 3, 14]), torch.tensor([4, 5, 0, 1])
    out = model(users, pos, neg)
    scores = model.full_scores(users)
    torch.testing.assert_close(out["pos_scores"], scores[torch.arange(4), pos])
    torch.testing.assert_close(out["neg_scores"], scores[torch.arange(4), neg])


def test_keep_mask_rate_and_independence():
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), 0.1)
    assert mask.shape == (1000, 1000) and mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - 0.9) < 0.002  # 4 sigma ~ 0.0012
    # neighbours come from the same 64-bit word: they must still be independent
    both = (mask[:, :-1] & mask[:, 1:]).float().mean().item()
    assert abs(both - 0.81) < 0.003
    assert keep_mask((10,), 0.0).all()


def test_random_words_follow_torch_seed_and_state():
    """The CPU masks come from numpy's SFC64 seeded by one draw from torch's generator: torch.manual_seed
    and a restored RNG state (what a checkpoint stores) give the same words, the next call new ones."""
    torch.manual_seed(3)
    first, second = random_words(1000), random_words(1000)
    state = torch.get_rng_state()
    third = random_words(1000)
    torch.manual_seed(3)
    assert torch.equal(random_words(1000), first) and torch.equal(random_words(1000), second)
    torch.set_rng_state(state)
    assert torch.equal(random_words(1000), third)
    assert not torch.equal(first, second) and first.dtype == torch.int64
    # every bit position is a fair coin: over 64,000 words its mean is 0.5 within 4.5 standard deviations
    bits = (random_words(64_000).unsqueeze(1) >> torch.arange(64)) & 1
    assert (bits.float().mean(dim=0) - 0.5).abs().max() < 4.5 * 0.5 / 64_000**0.5


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


def test_eq7_equals_the_per_node_messages():
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[6, 5, 4]).eval()
    with torch.no_grad():
        users, items = model.propagate()
        expected_users, expected_items = per_node_propagation(model, ds)
    torch.testing.assert_close(users, expected_users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items, expected_items, rtol=1e-5, atol=1e-6)
    # and the score is the inner product of the concatenations
    scores = model.full_scores(torch.arange(ds.n_users))
    torch.testing.assert_close(scores, expected_users @ expected_items.T, rtol=1e-4, atol=1e-5)


def test_node_dropout_keeps_one_minus_p_and_rescales():
    ds = small_dataset(n_users=200, n_items=300, empty_user=False, empty_item=False)
    graph = SparseGraph(normalized_adjacency(ds.train))
    torch.manual_seed(0)
    dropped = graph.dropout_values(0.1)
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.01
    torch.testing.assert_close(dropped[kept], graph.values[kept] / 0.9)


def test_dropouts_are_on_in_training_and_off_in_eval():
    ds = small_dataset()
    model = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.3, message_dropout=0.3)
    users = torch.arange(ds.n_users)
    model.train()
    assert not torch.equal(model.full_scores(users), model.full_scores(users))
    model.eval()
    torch.testing.assert_close(model.full_scores(users), model.full_scores(users))
    no_dropout = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0)
    no_dropout.load_state_dict(model.state_dict())
    no_dropout.train()  # without dropout, training mode gives the eval scores
    torch.testing.assert_close(no_dropout.full_scores(users), model.full_scores(users))


def test_message_dropout_is_standard_dropout():
    """Each entry of a layer's output is either dropped (0) or its eval value scaled by 1/(1-p)."""
    ds = small_dataset(n_users=60, n_items=80, empty_user=False, empty_item=False)
    model = NGCF(ds, embed_dim=16, layers=[16], node_dropout=0.0, message_dropout=0.3)
    model.eval()
    with torch.no_grad():
        reference = model.layers()[1]
        model.train()
        torch.manual_seed(0)
        out = model.layers()[1]
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.03  # 2,240 entries: ~4 standard deviations
    torch.testing.assert_close(out[~dropped], reference[~dropped] / 0.7)


def autograd_layers(model, nodes=None):
    """Eq. 7 in plain autograd operations, drawing the same random numbers in the same order as the
    model (node dropout once, then one message-dropout mask per layer). With `nodes`, the layers at
    those rows; the model computes the last layer at the batch's distinct rows alone (batch_rows), so
    does this (its mask drawn for them), always from the whole product A E, rows picked afterwards."""
    weights = model.graph.dropout(model.node_dropout) if model.node_dropout > 0 else None
    ego = model.embedding.weight
    outputs = [ego]
    rows, inverse, _ = (None, None, None) if nodes is None else batch_rows(nodes, model.graph.shape[0])
    for layer, (w1, w2) in enumerate(zip(model.w1, model.w2)):
        side = model.graph(ego, weights)
        if rows is not None and layer == len(model.w1) - 1:
            side, ego = side[rows], ego[rows]
        first = side + ego if model.adjacency == "symmetric" else side
        ego = F.leaky_relu(w1(first) + w2(side * ego), model.leaky_slope)
        if model.message_dropout > 0:
            keep = keep_mask(ego.shape, model.message_dropout, dtype=ego.dtype)
            ego = ego * keep / (1 - model.message_dropout)
        outputs.append(ego)
    if nodes is None:
        return outputs
    return [layer[nodes] for layer in outputs[:-1]] + [outputs[-1][inverse]]


@pytest.mark.parametrize(
    "adjacency,bias,dropout,gathered,layers",
    [
        ("symmetric", False, 0.0, "few", [7, 6, 5]),
        ("symmetric", False, 0.3, "few", [7, 6, 5]),
        ("symmetric", False, 0.3, "many", [7, 6, 5]),
        ("symmetric", True, 0.3, None, [7, 6, 5]),
        ("mean", True, 0.3, "few", [7, 6, 5]),
        ("mean", False, 0.0, None, [7, 6, 5]),
        ("mean", True, 0.3, "many", [7, 6, 5]),
        ("symmetric", False, 0.3, "few", [7]),  # the only layer is the last, computed at the rows
        ("symmetric", False, 0.0, "many", [7]),
    ],
)
def test_hand_written_backward_equals_autograd(adjacency, bias, dropout, gathered, layers):
    """The fused propagation (model/ngcf.py: _SumPropagation) gives autograd's values and gradients,
    for the batch's rows (duplicates included; the last layer computed at the distinct rows alone:
    with A[rows] when they are few, from the rows of the whole A E when many) and for the whole
    graph, with both dropouts."""
    ds = small_dataset(n_users=30, n_items=40)
    torch.manual_seed(0)
    model = NGCF(
        ds, embed_dim=8, layers=layers, adjacency=adjacency, bias=bias, node_dropout=dropout, message_dropout=dropout
    ).train()
    if bias:
        with torch.no_grad():
            for linear in (*model.w1, *model.w2):
                linear.bias.uniform_(-0.5, 0.5)
    n = ds.n_users + ds.n_items
    nodes = {
        "few": torch.tensor([0, 3, 3, 31, 45, 45, 45, n - 1]),
        "many": torch.cat([torch.arange(0, n, 2), torch.tensor([1, 1])]),
        None: None,
    }[gathered]
    if gathered:
        assert batch_rows(nodes, n)[2] == (gathered == "few")
    probes = [torch.randn(len(nodes) if gathered else n, d) for d in (8, *layers)]

    def loss_and_grads(layers):
        loss = sum((layer * probe).sum() for layer, probe in zip(layers, probes))
        grads = torch.autograd.grad(loss, list(model.parameters()))
        return [layer.detach() for layer in layers], grads

    torch.manual_seed(1)
    fused_layers, fused = loss_and_grads(model.layers(nodes))
    torch.manual_seed(1)
    reference_layers, expected = loss_and_grads(autograd_layers(model, nodes))
    for got, want in zip(fused_layers, reference_layers):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for (name, _), got, want in zip(model.named_parameters(), fused, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")
    if dropout:
        assert (fused_layers[1] == 0).any()  # the masks were drawn and applied


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
    assert not torch.allclose(paper.full_scores(users), variant.full_scores(users))


def test_l2_on_embedding_vs_final_and_the_bpr_loss():
    ds = small_dataset()
    torch.manual_seed(0)
    model = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0)
    users, pos, neg = torch.tensor([1, 2]), torch.tensor([0, 3]), torch.tensor([4, 5])
    out = model(users, pos, neg)
    table = model.embedding.weight
    expected = (
        table[users].pow(2).sum() + table[ds.n_users + pos].pow(2).sum() + table[ds.n_users + neg].pow(2).sum()
    ) / 2
    torch.testing.assert_close(out["l2"], expected)
    final = NGCF(ds, embed_dim=8, layers=[8, 8], node_dropout=0.0, message_dropout=0.0, l2_on="final")
    final.load_state_dict(model.state_dict())
    assert final(users, pos, neg)["l2"] > out["l2"]
    # BPR: mean(-ln sigmoid(pos - neg)) + reg * l2 / batch
    loss = bpr_loss(out, reg=0.1)
    manual = -torch.log(torch.sigmoid(out["pos_scores"] - out["neg_scores"])).mean() + 0.1 * out["l2"] / 2
    torch.testing.assert_close(loss, manual)
