"""NGCF: Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019).

Each layer, for all nodes at once (eq. 7, with L the normalised Laplacian):

    E^(l) = LeakyReLU( (L + I) E^(l-1) W1 + (L E^(l-1)) ⊙ E^(l-1) W2 )

The final representation concatenates every layer, e* = e^(0) || ... || e^(L), and the score
of (u, i) is e_u*ᵀ e_i*. The defaults follow the paper; the options named below switch to
what the authors' public code does instead (see ../shared/NGCF.md, and README.md).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.graph import (
    ADJACENCY_MODES,
    PropagationModel,
    SparseGraph,
    _spmm,
    batch_rows,
    keep_mask,
    normalized_adjacency,
    pair_scores,
)
from utils.errors import ConfigError

ACTIVATIONS = ("sum", "separate")
L2_TARGETS = ("embedding", "final")


class _SumPropagation(torch.autograd.Function):
    """Eq. 7 ('sum' activation) through every layer, with node and message dropout, and a
    backward written out by hand. Returns (E^(0), ..., E^(L)) at the rows `nodes`, each
    (len(nodes), d_l); with nodes None, (E^(1), ..., E^(L)) whole, each (N, d_l).

    With `nodes`, nothing reads the last layer elsewhere, so it is computed at the R distinct rows
    alone (model/graph.py: batch_rows): when they are few, with A[rows] (R, N) in place of A and
    A[rows]ᵀ in the backward (on Gowalla R is 4 % of the nodes: a step 0.38 -> 0.27 s); else from
    the R rows of the whole product A E, with ∂side zero off them in the backward (on ML-100K R is
    64 %: the layer's dense products and element-wise work shrink). Its message-dropout mask is
    drawn for those R rows.

    One layer, with A the Laplacian (node dropout already in its values) and keep the message
    dropout mask (0 or 1 per entry):
        side = A E      first = side + E ('symmetric'; 'mean' has the I inside A: first = side)
        second = side ⊙ E      z = [first | second] [W1 | W2]ᵀ + b      out = LeakyReLU(z) ⊙ keep
    (one product for both terms: [first | second] is (N, 2d), [W1 | W2] is (d_out, 2d)),
    and back, from g = ∂loss/∂out (the next layer's gradient plus the gathered rows'):
        g_z = LeakyReLU'(z) ⊙ keep ⊙ g      (with message dropout, m = LeakyReLU'(z) ⊙ keep is made
                                             once, in the forward: out = z ⊙ m and g_z = g ⊙ m)
        ∂[W1 | W2] = g_zᵀ [first | second]      ∂b = Σ_rows g_z
        [G1 | G2] = g_z [W1 | W2]
        ∂side = G1 + G2 ⊙ E
        ∂E = G1 ('symmetric' only) + G2 ⊙ side + Aᵀ ∂side
    (in the restricted last layer E, side, z, out are their R rows, and G1 + G2 ⊙ side lands on
    those rows of ∂E, zero elsewhere, before A[rows]ᵀ ∂side — or Aᵀ of ∂side zero off the rows —
    is added)
    This is what autograd computes, with half the passes over (N, d) arrays around the products:
    one gradient buffer per layer, the sums fused into addcmul and into the sparse product, and
    the gathered rows' gradient added in place instead of through a zero-filled (N, d) array
    (on Gowalla's 70k nodes those passes were a third of a step). tests/test_ngcf.py checks the
    gradients against autograd's. The propagation runs in float32 under bf16 autocast.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, nodes, ego, values, values_t, graph, adjacency, slope, dropout, *params):
        ctx.set_materialize_grads(False)
        matrix, transposed = graph.matrices((values, values_t))  # A and Aᵀ, (N, N)
        n_layers = len(params) // 2
        # Only the batch's R distinct rows of the last layer are read: it is computed there alone.
        rows, inverse, few = batch_rows(nodes, graph.shape[0]) if nodes is not None else (None, None, False)
        outputs, saved = [ego], []
        for layer, (weight, bias) in enumerate(zip(params[0::2], params[1::2])):  # [W1 | W2]: (d_out, 2d)
            ego_rows = ego  # E at the rows this layer computes: all N, or in the last layer R of them
            last_rows = rows is not None and layer == n_layers - 1
            if last_rows and few:
                matrix, transposed = graph.row_block(rows, (values, values_t))  # (R, N), (N, R)
            d = ego.shape[1]
            side = _spmm(matrix, ego)  # (n, d), n = N or R (A[rows] E)
            if last_rows:
                ego_rows = torch.index_select(ego, 0, rows)  # (R, d)
                if not few:
                    side = torch.index_select(side, 0, rows)  # (R, d): the rows of the whole A E
            inputs = ego.new_empty(side.shape[0], 2 * d)  # [first | second]: one product for both terms
            if adjacency == "symmetric":
                torch.add(side, ego_rows, out=inputs[:, :d])
            else:
                inputs[:, :d] = side
            torch.mul(side, ego_rows, out=inputs[:, d:])
            z = F.linear(inputs, weight, bias)  # (n, d_out)
            if dropout > 0:
                # LeakyReLU(z) ⊙ keep = z ⊙ m, m = keep where z > 0, slope · keep elsewhere: m is also
                # ∂out/∂z, so the backward needs one product instead of LeakyReLU' and then the mask.
                m = keep_mask(z.shape, dropout, z.device, z.dtype)
                torch.ops.aten.leaky_relu_backward.grad_input(m, z, slope, False, grad_input=m)
                out = z.mul_(m)
            else:
                m, out = None, F.leaky_relu_(z, slope)
            saved.append((ego_rows, side, inputs, m, out, transposed))
            outputs.append(out)
            ego = out
        ctx.adjacency, ctx.slope, ctx.n_nodes, ctx.ego = adjacency, slope, graph.shape[0], outputs[0]
        ctx.nodes, ctx.rows, ctx.inverse, ctx.few = nodes, rows, inverse, few
        ctx.saved, ctx.params = saved, params
        if nodes is None or n_layers == 0:
            return tuple(outputs[1:]) if nodes is None else (torch.index_select(ego, 0, nodes),)
        gathered = [torch.index_select(layer, 0, nodes) for layer in outputs[:-1]]
        return (*gathered, torch.index_select(outputs[-1], 0, inverse))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, *grads):
        nodes, rows = ctx.nodes, ctx.rows
        if nodes is None:
            grads = (None, *grads)  # E^(0) itself was not returned

        def add_rows(g, grad, like, index):
            """g + the gradient reaching a layer from the returned rows, grad[j] going to row index[j]
            (index None: grad is the whole layer's). g: ours to change, or None."""
            if grad is None:
                return torch.zeros_like(like) if g is None else g
            if index is None:
                return grad if g is None else g.add_(grad)
            # a contiguous source (pair_scores gives one): index_add_ is 4x slower reading strided rows
            return (torch.zeros_like(like) if g is None else g).index_add_(0, index, grad.contiguous())

        g, param_grads = None, []
        for layer in reversed(range(len(ctx.saved))):
            ego_rows, side, inputs, m, out, transposed = ctx.saved[layer]
            weight, bias = ctx.params[2 * layer : 2 * layer + 2]
            restricted = rows is not None and layer == len(ctx.saved) - 1  # computed at R rows only
            g = add_rows(g, grads[layer + 1], out, ctx.inverse if restricted else nodes)  # ∂loss/∂out, (n, d_out)
            if m is None:
                g_z = torch.ops.aten.leaky_relu_backward(g, out, ctx.slope, True)  # out has z's sign
            else:
                g_z = torch.mul(g, m) if g is grads[layer + 1] else g.mul_(m)  # not into autograd's tensor
            param_grads[:0] = [g_z.T @ inputs, None if bias is None else g_z.sum(dim=0)]  # ∂[W1 | W2], ∂b
            g_inputs = g_z @ weight  # (n, 2d) = [G1 | G2]
            d = ego_rows.shape[1]
            g1, g2 = g_inputs[:, :d], g_inputs[:, d:]
            g_side = torch.addcmul(g1, g2, ego_rows)
            g = torch.addcmul(g1, g2, side) if ctx.adjacency == "symmetric" else torch.mul(g2, side)  # (n, d)
            if restricted:
                g = g.new_zeros(ctx.n_nodes, d).index_copy_(0, rows, g)  # (N, d), zero off the R rows
                if not ctx.few:  # side was the R rows of the whole A E: Aᵀ takes ∂side zero elsewhere
                    g_side = g_side.new_zeros(ctx.n_nodes, d).index_copy_(0, rows, g_side)
            g = torch.addmm(g, transposed, g_side, out=g)  # + Aᵀ ∂side (A[rows]ᵀ with few rows), (N, d)
        g = add_rows(g, grads[0], ctx.ego, nodes)  # (N, d0)
        return (None, g, None, None, None, None, None, None, *param_grads)


class NGCF(PropagationModel):
    """NGCF sized from the data set.

    embed_dim: d of the layer-0 embeddings. layers: output size of each propagation layer.
    node_dropout: share of the Laplacian's non-zeros dropped each training step.
    message_dropout: dropout on each layer's output. leaky_slope: LeakyReLU negative slope.
    adjacency: 'symmetric' (paper: L = D^-1/2 A D^-1/2, plus I in the first term) or 'mean'
        (public code: D^-1 (A + I) for both terms).
    activation: 'sum' (eq. 7: one LeakyReLU on the sum) or 'separate' (public TF code: one on each term).
    normalize_layers: L2-normalise each layer's output before the concatenation (public code).
    bias: add a bias after W1 and W2 (public code).
    l2_on: 'embedding' (paper: regularise e^(0) of the batch) or 'final' (public code: e*).
    """

    def __init__(
        self,
        dataset,
        embed_dim=64,
        layers=(64, 64, 64),
        node_dropout=0.1,
        message_dropout=0.1,
        leaky_slope=0.2,
        adjacency="symmetric",
        activation="sum",
        normalize_layers=False,
        bias=False,
        l2_on="embedding",
    ):
        super().__init__()
        for key, value, accepted in (
            ("adjacency", adjacency, ADJACENCY_MODES),
            ("activation", activation, ACTIVATIONS),
            ("l2_on", l2_on, L2_TARGETS),
        ):
            if value not in accepted:
                raise ConfigError(f"arch.args.{key}: expected one of {accepted}, got {value!r}")
        for key, value in (("node_dropout", node_dropout), ("message_dropout", message_dropout)):
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"arch.args.{key}: expected a number in [0, 1), got {value!r}")
        if not isinstance(embed_dim, int) or embed_dim < 1 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise ConfigError(f"arch.args.embed_dim/layers: need positive integers, got {embed_dim!r} and {layers!r}")
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.adjacency, self.activation = adjacency, activation
        self.normalize_layers, self.l2_on = normalize_layers, l2_on
        self.node_dropout, self.leaky_slope = node_dropout, leaky_slope

        self.embedding = nn.Embedding(self.n_users + self.n_items, embed_dim)  # E^(0): users, then items
        dims = [embed_dim, *layers]
        self.w1 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))
        self.w2 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))
        self.message_dropout = message_dropout
        self.graph = SparseGraph(normalized_adjacency(dataset.train, adjacency))  # built once
        self.reset_parameters()

    def reset_parameters(self):
        # Users and items as two tables, as the reference code initialises them (fan = rows + d).
        with torch.no_grad():
            nn.init.xavier_uniform_(self.embedding.weight[: self.n_users])
            nn.init.xavier_uniform_(self.embedding.weight[self.n_users :])
        for linear in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def layers(self, nodes=None):
        """[E^(0), E^(1), ..., E^(L)] at the rows `nodes` (all N = n_users + n_items rows when None):
        each (len(nodes), d_l), eq. 7 per layer."""
        weights = self.graph.dropout(self.node_dropout if self.training else 0.0)  # one draw per step
        dropout = self.message_dropout if self.training else 0.0
        if self.activation == "sum":
            # Message dropout's 1/(1-p) rides on the parameters: LeakyReLU(s z) = s LeakyReLU(z) for s > 0.
            scale = 1.0 / (1.0 - dropout)
            params = []
            for w1, w2 in zip(self.w1, self.w2):
                bias = None if w1.bias is None else (w1.bias + w2.bias) * scale
                params += [torch.cat([w1.weight, w2.weight], dim=1) * scale, bias]
            ego = self.embedding.weight  # (N, d0)
            layers = _SumPropagation.apply(
                nodes, ego, *weights, self.graph, self.adjacency, self.leaky_slope, dropout, *params
            )
            return [ego, *layers] if nodes is None else list(layers)
        ego = self.embedding.weight  # (N, d0)
        outputs = [ego]
        for w1, w2 in zip(self.w1, self.w2):
            side = self.graph(ego, weights)  # (N, d) = L E
            first = side + ego if self.adjacency == "symmetric" else side  # (L + I) E; 'mean' has I inside
            ego = F.leaky_relu(w1(first), self.leaky_slope) + F.leaky_relu(w2(side * ego), self.leaky_slope)
            if dropout > 0:
                ego = ego * (keep_mask(ego.shape, dropout, ego.device, ego.dtype) / (1.0 - dropout))  # (N, d_out)
            outputs.append(ego)
        return outputs if nodes is None else [torch.index_select(layer, 0, nodes) for layer in outputs]

    def propagate(self):
        """All nodes' final representations e* = e^(0) || ... || e^(L): (n_users, D), (n_items, D)."""
        final = torch.cat(self._final_parts(self.layers()), dim=1)  # (N, D)
        return final[: self.n_users], final[self.n_users :]

    def _final_parts(self, layers):
        """The parts of e* = e^(0) || ... || e^(L): the layers, with normalize_layers each propagated
        one L2-normalised."""
        if self.normalize_layers:
            layers = layers[:1] + [F.normalize(layer, dim=1) for layer in layers[1:]]
        return layers

    def forward(self, users, pos_items, neg_items):
        # Only the batch's rows of e* are needed: each layer is gathered at them once (the last one
        # is computed at them alone), and the backward scatters their gradient once per layer.
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])  # (3B,)
        parts = self._final_parts(self.layers(nodes))  # (3B, d_l) each
        pos_scores, neg_scores = pair_scores(len(users), parts)  # (B,) each, e* never concatenated
        reg = parts[:1] if self.l2_on == "embedding" else parts  # the paper regularises e^(0) of the batch
        return {"pos_scores": pos_scores, "neg_scores": neg_scores, "l2": sum(part.pow(2).sum() for part in reg) / 2}
