"""BPR's two scores from the batch's rows of every layer, without concatenating the layers."""

import torch


class PairScores(torch.autograd.Function):
    """Each layer is (3B, d_l): its rows at [users | positives | negatives]. With u_l, p_l, n_l its
    three (B, d_l) blocks, the scores of e* = e^(0) || ... || e^(L) are
        pos = Σ_l rowwise u_l · p_l (B,)        neg = Σ_l rowwise u_l · n_l (B,)
    and each layer's gradient is one (3B, d_l) block, [g_pos p_l + g_neg n_l | g_pos u_l | g_neg u_l]:
    what the propagation's backward scatters to the graph's rows as it is, where autograd on
    cat + split + products makes two (3B, D) concatenations and a copy of every layer's slice."""

    @staticmethod
    def forward(ctx, batch_size, *layers):
        ctx.batch_size = batch_size
        ctx.save_for_backward(*layers)
        scores = None
        for layer in layers:
            u, pn = layer.reshape(3, batch_size, -1)[0], layer.reshape(3, batch_size, -1)[1:]  # (B, d), (2, B, d)
            layer_scores = torch.mul(pn, u).sum(dim=2)  # (2, B): u·p, u·n
            scores = layer_scores if scores is None else scores.add_(layer_scores)
        return scores[0], scores[1]

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        batch = ctx.batch_size
        g = torch.stack([g_pos, g_neg]).unsqueeze(2)  # (2, B, 1)
        grads = []
        for layer in ctx.saved_tensors:
            u, p, n = layer.reshape(3, batch, -1)  # (B, d) each
            grad = layer.new_empty(3, batch, layer.shape[1])
            torch.mul(p, g[0], out=grad[0]).addcmul_(n, g[1])  # ∂u = g_pos p + g_neg n
            torch.mul(u, g, out=grad[1:])  # ∂p = g_pos u, ∂n = g_neg u
            grads.append(grad.view(layer.shape))
        return (None, *grads)


def pair_scores(batch_size, layers):
    """(pos, neg), each (B,): e_u*ᵀ e_p* and e_u*ᵀ e_n*, where e* concatenates `layers`, each (3B, d_l)
    holding the rows of users, positives and negatives in that order (B = batch_size)."""
    return PairScores.apply(batch_size, *layers)
