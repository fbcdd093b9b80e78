"""NGCF's eq. 7 through every layer as one autograd function with a hand-written backward: the
'fused' implementation of model/ngcf.py (activation 'sum'), chosen on the CPU.

What it saves over the plain autograd of model/ngcf.py, with the same values and gradients
(tests/test_fast.py): both terms are one product, [first | second] (n, 2d) times [W1 | W2];
the backward keeps one gradient buffer per layer, fuses the sums into addcmul and the sparse
product, and adds the gathered rows' gradient in place instead of through a zero-filled (N, d)
array; message dropout's mask is folded into LeakyReLU's derivative, and its 1/(1-p) into the
weights; and in a training step the last layer is computed at the batch's R distinct rows alone,
since nothing reads it elsewhere: with A[rows] (R, N) in place of A when they are few, else from
the R rows of the whole product A E.
"""

import torch
import torch.nn.functional as F

from model.fast.masks import keep_mask
from model.fast.pairs import pair_scores
from model.fast.sparse import batch_rows, matrices, row_block, spmm


class SumPropagation(torch.autograd.Function):
    """Returns (E^(0), ..., E^(L)) at the rows `nodes`, each (len(nodes), d_l); with nodes None,
    (E^(1), ..., E^(L)) whole, each (N, d_l).

    One layer, with A the Laplacian (node dropout already in its values) and keep the message
    dropout mask (0 or 1 per entry), params [W1 | W2] (d_out, 2d) and b already scaled by 1/(1-p):
        side = A E      first = side + E ('symmetric'; 'mean' has the I inside A: first = side)
        second = side ⊙ E      z = [first | second] [W1 | W2]ᵀ + b      out = LeakyReLU(z) ⊙ keep
    and back, from g = ∂loss/∂out (the next layer's gradient plus the gathered rows'):
        g_z = LeakyReLU'(z) ⊙ keep ⊙ g      (m = LeakyReLU'(z) ⊙ keep is made once, in the forward:
                                             out = z ⊙ m and g_z = g ⊙ m)
        ∂[W1 | W2] = g_zᵀ [first | second]      ∂b = Σ_rows g_z
        [G1 | G2] = g_z [W1 | W2]
        ∂side = G1 + G2 ⊙ E
        ∂E = G1 ('symmetric' only) + G2 ⊙ side + Aᵀ ∂side
    (in the restricted last layer E, side, z, out are their R rows, and G1 + G2 ⊙ side lands on
    those rows of ∂E, zero elsewhere, before A[rows]ᵀ ∂side — or Aᵀ of ∂side zero off the rows —
    is added). The propagation runs in float32 under bf16 autocast.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, nodes, ego, values, graph, adjacency, slope, dropout, draw_mask, *params):
        ctx.set_materialize_grads(False)
        matrix, transposed = matrices(graph, values)  # A and Aᵀ, (N, N)
        n_layers = len(params) // 2
        # Only the batch's R distinct rows of the last layer are read: it is computed there alone.
        rows, inverse, rows_are_few = batch_rows(nodes, graph.shape[0]) if nodes is not None else (None, None, False)
        outputs, saved = [ego], []
        for layer, (weight, bias) in enumerate(zip(params[0::2], params[1::2])):  # [W1 | W2]: (d_out, 2d)
            ego_rows = ego  # E at the rows this layer computes: all N, or in the last layer R of them
            last_rows = rows is not None and layer == n_layers - 1
            if last_rows and rows_are_few:
                matrix, transposed = row_block(graph, rows, values)  # (R, N), (N, R)
            d = ego.shape[1]
            side = spmm(matrix, ego)  # (n, d), n = N or R (A[rows] E)
            if last_rows:
                ego_rows = torch.index_select(ego, 0, rows)  # (R, d)
                if not rows_are_few:
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
                m = draw_mask(z.shape, dropout, z.device, z.dtype)
                torch.ops.aten.leaky_relu_backward.grad_input(m, z, slope, False, grad_input=m)
                out = z.mul_(m)
            else:
                m, out = None, F.leaky_relu_(z, slope)
            saved += [ego_rows, side, inputs, m, out, transposed]
            outputs.append(out)
            ego = out
        ctx.adjacency, ctx.slope, ctx.n_nodes, ctx.rows_are_few = adjacency, slope, graph.shape[0], rows_are_few
        ctx.n_layers = n_layers
        # Everything the backward reads goes through save_for_backward: tensors kept on ctx itself
        # would hold the outputs they came from and never be freed.
        ctx.save_for_backward(nodes, rows, inverse, outputs[0], *params, *saved)
        if nodes is None or n_layers == 0:
            return tuple(outputs[1:]) if nodes is None else (torch.index_select(ego, 0, nodes),)
        gathered = [torch.index_select(layer, 0, nodes) for layer in outputs[:-1]]
        return (*gathered, torch.index_select(outputs[-1], 0, inverse))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, *grads):
        nodes, rows, inverse, ego0, *rest = ctx.saved_tensors
        params, saved = rest[: 2 * ctx.n_layers], rest[2 * ctx.n_layers :]
        if nodes is None:
            grads = (None, *grads)  # E^(0) itself was not returned

        def add_rows(g, grad, like, index):
            """g + the gradient reaching a layer from the returned rows, grad[j] going to row index[j]
            (index None: grad is the whole layer's). g: ours to change, or None."""
            if grad is None:
                return torch.zeros_like(like) if g is None else g
            if index is None:
                return grad if g is None else g.add_(grad)
            # a contiguous source (pair_scores gives one): index_add_ reads strided rows slowly
            return (torch.zeros_like(like) if g is None else g).index_add_(0, index, grad.contiguous())

        g, param_grads = None, []
        for layer in reversed(range(ctx.n_layers)):
            ego_rows, side, inputs, m, out, transposed = saved[6 * layer : 6 * layer + 6]
            weight, bias = params[2 * layer : 2 * layer + 2]
            restricted = rows is not None and layer == ctx.n_layers - 1  # computed at R rows only
            g = add_rows(g, grads[layer + 1], out, inverse if restricted else nodes)  # ∂loss/∂out, (n, d_out)
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
                if not ctx.rows_are_few:  # side was the R rows of the whole A E: Aᵀ takes ∂side zero elsewhere
                    g_side = g_side.new_zeros(ctx.n_nodes, d).index_copy_(0, rows, g_side)
            g = torch.addmm(g, transposed, g_side, out=g)  # + Aᵀ ∂side (A[rows]ᵀ with few rows), (N, d)
        g = add_rows(g, grads[0], ego0, nodes)  # (N, d0)
        return (None, g, None, None, None, None, None, None, *param_grads)


def layers_at(model, nodes=None):
    """[E^(0), ..., E^(L)] of NGCF's eq. 7 ('sum' activation) for `model` (model/ngcf.py): at the
    rows `nodes` (3B,), each (3B, d_l), or whole, each (N, d_l), when nodes is None. Its dropout
    masks come from masks.py (or the model's mask_source), drawn in the order of model.embeddings()."""
    draw = model.mask_source or keep_mask  # a new keep mask each call, which the kernel writes into
    values = model.dropout(model.graph.values, model.node_dropout, draw)  # node dropout: L's non-zeros
    p = model.message_dropout if model.training else 0.0
    # Message dropout's 1/(1-p) rides on the parameters: LeakyReLU(s z) = s LeakyReLU(z) for s > 0.
    scale = 1.0 / (1.0 - p)
    params = []
    for linear1, linear2 in zip(model.w1, model.w2):
        bias = None if linear1.bias is None else (linear1.bias + linear2.bias) * scale
        params += [torch.cat([linear1.weight, linear2.weight], dim=1) * scale, bias]
    ego = model.embedding.weight
    args = (nodes, ego, values, model.graph, model.adjacency, model.leaky_slope, p, draw, *params)
    layers = SumPropagation.apply(*args)
    return [ego, *layers] if nodes is None else list(layers)


def bpr_step(model, nodes, batch_size):
    """NGCF's training forward at a BPR batch's rows `nodes` = [users | positives | negatives]:
    (the parts of e* at those rows, (pos_scores, neg_scores)), e* never concatenated."""
    parts = model.final_parts(layers_at(model, nodes))  # (3B, d_l) each
    return parts, pair_scores(batch_size, parts)
