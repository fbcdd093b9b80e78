"""The CPU kernels of model/fast/ compute what the models' own plain-autograd code computes:
values and gradients, in float64, with both dropouts' masks injected (the same masks for both),
both adjacencies, with and without bias, for a batch's rows (restricted last layer) and whole."""

import gc
import weakref

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import small_dataset

from model.fast import lightgcn as fast_lightgcn
from model.fast import ngcf as fast_ngcf
from model.fast.masks import keep_mask, random_words
from model.fast.ngcf import SumPropagation
from model.fast.pairs import pair_scores
from model.fast.sparse import batch_rows, product, row_block, rows_product
from model.graph import SparseGraph, csr_tensor, normalized_adjacency
from model.lightgcn import LightGCN
from model.ngcf import NGCF


class FixedMasks:
    """Keep masks fixed in advance, for the model's `keep_mask`: the n-th draw of a step gets the
    n-th mask, cut to the batch's distinct rows when the fused kernel asks for those alone."""

    def __init__(self, masks, rows=None):
        self.masks, self.rows, self.calls = masks, rows, 0

    def __call__(self, shape, p, device=None, dtype=torch.float32):
        mask = self.masks[self.calls % len(self.masks)]
        self.calls += 1
        if mask.shape[0] != shape[0]:
            mask = mask[self.rows]
        assert tuple(mask.shape) == tuple(shape), (mask.shape, shape)
        return mask.to(dtype, copy=True)  # a new tensor: the fused kernel writes into its masks


def masks_for(model, dims, p, seed):
    """Node dropout's mask (nnz,), then one message-dropout mask per layer (N, d_l)."""
    generator = torch.Generator().manual_seed(seed)
    n = model.graph.shape[0]
    node = (torch.rand(model.graph.nnz, generator=generator) >= p).double()
    return [node] + [(torch.rand(n, d, generator=generator) >= p).double() for d in dims]


CASES = [  # adjacency, bias, dropout, rows ('few': the last layer from A[rows]; 'many': from A E's rows), layers
    ("symmetric", False, 0.0, "few", [7, 6, 5]),
    ("symmetric", False, 0.3, "few", [7, 6, 5]),
    ("symmetric", False, 0.3, "many", [7, 6, 5]),
    ("symmetric", True, 0.3, None, [7, 6, 5]),
    ("mean", True, 0.3, "few", [7, 6, 5]),
    ("mean", False, 0.0, None, [7, 6, 5]),
    ("mean", True, 0.3, "many", [7, 6, 5]),
    ("symmetric", False, 0.3, "few", [7]),  # the only layer is the last, computed at the rows
    ("symmetric", False, 0.0, "many", [7]),
]


def batch_nodes(ds, which):
    n = ds.n_users + ds.n_items
    return {
        "few": torch.tensor([0, 3, 3, 31, 45, 45, 45, n - 1]),
        "many": torch.cat([torch.arange(0, n, 2), torch.tensor([1, 1])]),
        None: None,
    }[which]


@pytest.mark.parametrize("adjacency,bias,dropout,which,layers", CASES)
def test_fused_ngcf_equals_the_reference(adjacency, bias, dropout, which, layers):
    ds = small_dataset(n_users=30, n_items=40)
    torch.manual_seed(0)
    kwargs = dict(embed_dim=8, layers=layers, adjacency=adjacency, bias=bias, node_dropout=dropout)
    reference = NGCF(ds, message_dropout=dropout, impl="reference", **kwargs).double().train()
    fused = NGCF(ds, message_dropout=dropout, impl="fused", **kwargs).double().train()
    if bias:
        with torch.no_grad():
            for linear in (*reference.w1, *reference.w2):
                linear.bias.uniform_(-0.5, 0.5)
    fused.load_state_dict(reference.state_dict())
    nodes = batch_nodes(ds, which)
    n = ds.n_users + ds.n_items
    if nodes is not None:
        assert batch_rows(nodes, n)[2] == (which == "few")
    masks = masks_for(reference, layers, dropout, seed=1)
    rows = None if nodes is None else torch.unique(nodes)
    probes = [torch.randn(n if nodes is None else len(nodes), d, dtype=torch.float64) for d in (8, *layers)]

    def value_and_grads(model):
        model.mask_source = FixedMasks(masks, rows)
        if model.fused:
            layers_out = fast_ngcf.layers_at(model, nodes)
        else:  # the model's own code, whole, at the rows
            layers_out = [layer if nodes is None else layer[nodes] for layer in model.embeddings()]
        loss = sum((layer * probe).sum() for layer, probe in zip(layers_out, probes))
        return [layer.detach() for layer in layers_out], torch.autograd.grad(loss, list(model.parameters()))

    assert fused.fused and not reference.fused
    got_layers, got = value_and_grads(fused)
    want_layers, want = value_and_grads(reference)
    for a, b in zip(got_layers, want_layers):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for (name, _), a, b in zip(reference.named_parameters(), got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"gradient of {name}")
    if dropout:
        assert (got_layers[1] == 0).any()  # the masks were applied


@pytest.mark.parametrize("model_class", ["NGCF", "LightGCN"])
def test_the_training_step_is_the_same_through_either_implementation(model_class):
    """forward() on a BPR batch, the one place a graph model switches to its kernel: the same scores,
    l2 and parameter gradients either way (NGCF with the public code's layer normalisation and l2)."""
    ds = small_dataset(n_users=30, n_items=40)
    batch = {"users": torch.tensor([0, 3, 3, 7]), "pos_items": torch.tensor([1, 5, 9, 9])}
    batch["neg_items"] = torch.tensor([2, 2, 30, 39])
    nodes = torch.cat([batch["users"], ds.n_users + batch["pos_items"], ds.n_users + batch["neg_items"]])
    if model_class == "NGCF":
        kwargs = dict(embed_dim=6, layers=[5, 4], normalize_layers=True, l2_on="final", node_dropout=0.3)
        build = lambda impl: NGCF(ds, message_dropout=0.3, impl=impl, **kwargs)  # noqa: E731
        dims = [5, 4]
    else:
        build = lambda impl: LightGCN(ds, embed_dim=6, n_layers=2, edge_dropout=0.3, impl=impl)  # noqa: E731
        dims = []
    torch.manual_seed(0)
    reference, fused = build("reference").double().train(), build("fused").double().train()
    fused.load_state_dict(reference.state_dict())
    masks = masks_for(reference, dims, 0.3, seed=3)

    def step(model):
        model.mask_source = FixedMasks(masks, torch.unique(nodes))
        out = model(batch)
        loss = (out["pos_scores"] * torch.arange(1.0, 5.0)).sum() - out["neg_scores"].sum() + 0.1 * out["l2"]
        return [out[k].detach() for k in ("pos_scores", "neg_scores", "l2")], torch.autograd.grad(
            loss, list(model.parameters())
        )

    assert fused.fused and not reference.fused
    (got, got_grads), (want, want_grads) = step(fused), step(reference)
    for a, b in zip(got + list(got_grads), want + list(want_grads)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("which", ["few", "many", None])
def test_fused_ngcf_gradcheck(which):
    """torch.autograd.gradcheck on the fused function itself: its backward against finite differences."""
    ds = small_dataset()
    graph = SparseGraph(normalized_adjacency(ds.train)).double()
    n = graph.shape[0]
    torch.manual_seed(0)
    ego = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    params = [torch.randn(3, 6, dtype=torch.float64, requires_grad=True), None] * 2  # [W1 | W2] per layer, no bias
    nodes = {"few": torch.tensor([0, 2, 2, n - 1]), "many": torch.arange(0, n, 2), None: None}[which]
    masks = [(torch.rand(n, 3) >= 0.3).double() for _ in range(2)]
    rows = None if nodes is None else torch.unique(nodes)
    draw = FixedMasks(masks, rows)
    values = graph.values * (torch.rand(graph.nnz) >= 0.2).double() / 0.8  # node dropout

    def propagate(ego, w_a, w_b):
        return SumPropagation.apply(nodes, ego, values, graph, "symmetric", 0.2, 0.3, draw, w_a, None, w_b, None)

    assert torch.autograd.gradcheck(propagate, (ego, params[0], params[2]), eps=1e-6, atol=1e-5)


def test_fused_whole_graph_outputs_are_freed():
    """With nodes=None and gradients on (training-mode full_scores), the fused function's outputs are
    freed once dropped: nothing it keeps for the backward holds them."""
    ds = small_dataset()
    model = NGCF(ds, embed_dim=8, layers=[8, 8], impl="fused").train()
    layers = fast_ngcf.layers_at(model, None)
    assert layers[-1].requires_grad
    ref = weakref.ref(layers[-1])
    del layers
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("edge_dropout,which", [(0.0, "few"), (0.3, "few"), (0.3, "many"), (0.3, None)])
def test_fused_lightgcn_equals_the_reference(edge_dropout, which):
    ds = small_dataset(n_users=30, n_items=40)
    torch.manual_seed(0)
    reference = LightGCN(ds, embed_dim=6, n_layers=2, edge_dropout=edge_dropout, impl="reference").double().train()
    fused = LightGCN(ds, embed_dim=6, n_layers=2, edge_dropout=edge_dropout, impl="fused").double().train()
    fused.load_state_dict(reference.state_dict())
    nodes = batch_nodes(ds, which)
    masks = masks_for(reference, [], edge_dropout, seed=2)
    probe = torch.randn(ds.n_users + ds.n_items if nodes is None else len(nodes), 6, dtype=torch.float64)

    def value_and_grad(model):
        model.mask_source = FixedMasks(masks)
        if model.fused:
            final = fast_lightgcn.mean_at(model, nodes)
        else:
            final = model.mean_of_layers()
            final = final if nodes is None else final[nodes]
        (grad,) = torch.autograd.grad((final * probe).sum(), [model.embedding.weight])
        return final.detach(), grad

    for a, b in zip(value_and_grad(fused), value_and_grad(reference)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


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
    values = graph.values * keep_mask((graph.nnz,), 0.3, dtype=torch.float32) / 0.7
    dense = graph.to_dense(values)
    block, transposed = row_block(graph, rows, values)
    assert block.shape == (5, n) and transposed.shape == (n, 5)
    torch.testing.assert_close(block.to_dense(), dense[rows])
    torch.testing.assert_close(transposed.to_dense(), dense[rows].T)
    x = torch.randn(n, 3, requires_grad=True)
    torch.testing.assert_close(product(graph, x, values), dense @ x)  # the whole product, with these indices too
    probe = torch.randn(5, 3)
    (rows_product(x, (block, transposed)) * probe).sum().backward()
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


def test_auto_picks_fused_on_the_cpu_and_says_so():
    ds = small_dataset()
    for impl, fused in (("auto", True), ("reference", False), ("fused", True)):
        model = NGCF(ds, embed_dim=4, layers=[4], impl=impl)
        line = model.on_device(torch.device("cpu"))
        assert model.fused == fused and f"impl {impl} -> {'fused' if fused else 'reference'}" in line
    assert not NGCF(ds, embed_dim=4, layers=[4], activation="separate").fused
    with pytest.raises(Exception, match="'fused' cannot run here"):
        NGCF(ds, embed_dim=4, layers=[4], activation="separate", impl="fused").on_device(torch.device("cpu"))
    assert np.isfinite(LightGCN(ds, impl="auto").full_scores(torch.arange(3), None).detach().numpy()).all()


def test_a_history_times_an_item_item_matrix_in_column_blocks_is_the_product():
    """sparse_times_dense (the item-item models' scores) equals one product, including a last
    block narrower than the others."""
    from model.fast.sparse import COLUMN_BLOCK, sparse_times_dense

    history = sp.random(7, 50, density=0.2, format="csr", random_state=0)
    history.data[:] = 1.0
    x = csr_tensor(*(torch.from_numpy(a) for a in (history.indptr, history.indices, history.data)), history.shape)
    dense = torch.randn(50, 2 * COLUMN_BLOCK + 3, dtype=torch.float64)
    torch.testing.assert_close(sparse_times_dense(x, dense), torch.from_numpy(history.toarray()) @ dense)
