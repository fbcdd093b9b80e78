"""Full-ranking evaluation, shared by the trainer and test.py.

For each user: score all items, rank out the items the user is known to have, take the top K
and compare with the held-out items. One top-K for the largest K serves every metric.
"""

import contextlib

import torch

from logger.progress import Progress
from utils import distributed
from utils.distributed import all_reduce_sum
from utils.errors import ConfigError, ContractError
from utils.validation import parse_metric_name


def parse_metrics(names, metric_fns):
    """['recall@20', ...] -> [(name, fn, k), ...]; an unknown metric lists the known ones."""
    parsed = []
    for i, name in enumerate(names):
        base, k = parse_metric_name(name, where=f"metrics[{i}]")
        if base not in metric_fns:
            raise ConfigError(
                f"metrics[{i}]: unknown metric '{base}' in '{name}' "
                f"(available: {', '.join(sorted(metric_fns))}, each as name@K)"
            )
        parsed.append((name, metric_fns[base], k))
    return parsed


def _csr_rows_to_torch(rows, device):
    """CSR (B, n) -> (row index (nnz,), column index (nnz,)) int64 tensors on device."""
    counts = torch.from_numpy(rows.indptr[1:] - rows.indptr[:-1]).to(device)
    row = torch.repeat_interleave(torch.arange(rows.shape[0], device=device), counts)
    return row, torch.from_numpy(rows.indices.astype("int64")).to(device)


def rank_out(scores, rows):
    """Set to -inf, in place, the items of `rows` (CSR (B, n_items)) in scores (B, n_items)."""
    row, col = _csr_rows_to_torch(rows, scores.device)
    scores[row, col] = float("-inf")
    return scores


CHUNK = 64  # items per chunk for the top-K prefilter


def _top_candidates(scores, k):
    """(B, n_items) -> (values, items), each (B, k'): the k' = min(k, n_items) highest scores of each
    row, highest first (order among equal scores unspecified), as torch.topk but faster.

    torch.topk over 40k items per row is most of the ranking time on the CPU. Cut each row into
    chunks of CHUNK items and take each chunk's maximum: the k chunks with the highest maxima
    hold the k highest scores (any chunk left out has a maximum no higher than theirs, and those
    k maxima are k scores at least as high), so topk runs on k * CHUNK candidates per row.
    Works on either layout of `scores`: rows of items, or a transposed item-major buffer.
    """
    batch, n_items = scores.shape
    n_chunks = n_items // CHUNK
    if n_chunks < 4 * k:  # few items: plain topk
        return scores.topk(min(k, n_items), dim=1)
    whole = n_chunks * CHUNK
    if scores.stride(1) == 1:  # (B, n_items) rows
        chunk_max = scores[:, :whole].unflatten(1, (n_chunks, CHUNK)).amax(dim=2)  # (B, n_chunks)
    else:  # item-major (n_items, B) underneath: reduce along its rows
        chunk_max = scores.T[:whole].unflatten(0, (n_chunks, CHUNK)).amax(dim=1).T  # (B, n_chunks)
    chunks = chunk_max.topk(k, dim=1).indices  # (B, k)
    items = (chunks.unsqueeze(2) * CHUNK + torch.arange(CHUNK, device=scores.device)).flatten(1)  # (B, k*CHUNK)
    tail = torch.arange(whole, n_items, device=scores.device).expand(batch, -1)  # the last, partial chunk
    items = torch.cat([items, tail], dim=1)
    values, picked = scores.gather(1, items).topk(k, dim=1)
    return values, items.gather(1, picked)


@torch.no_grad()
def top_k_items(scores, k):
    """(B, n_items) scores -> (B, k) item indices, highest score first; equal scores are ranked by
    lower item index, so the result (and every metric) does not depend on topk's tie order.

    One topk of k + 1: where the (k+1)-th score equals the k-th, a tie straddles the K-th place,
    and only those rows are resolved exactly.
    """
    values, top = _top_candidates(scores, k + 1)  # (B, k+1), highest first
    if values.shape[1] > k:
        kth = values[:, k - 1 : k]  # (B, 1)
        rows = torch.nonzero(values[:, k] == kth[:, 0]).squeeze(1)  # a tie across the K-th place
        top = top[:, :k]
        if rows.numel():
            sub, sub_kth = scores[rows], kth[rows]
            above = sub > sub_kth
            at = sub == sub_kth
            places = k - above.sum(dim=1, keepdim=True)  # how many of the tied items fit
            chosen = above | (at & (at.cumsum(dim=1) <= places))  # exactly k per row, lowest indices first
            top[rows] = torch.nonzero(chosen)[:, 1].view(-1, k)
    top = top.sort(dim=1).values  # by index ...
    order = scores.gather(1, top).sort(dim=1, descending=True, stable=True).indices  # ... then by score
    return top.gather(1, order)


def keep_only(scores, rows):
    """Set to -inf, in place, every item of scores (B, n_items) that is not in `rows` (CSR (B, n_items))."""
    row, col = _csr_rows_to_torch(rows, scores.device)
    kept = torch.full_like(scores, float("-inf"))
    kept[row, col] = scores[row, col]
    scores.copy_(kept)
    return scores


@torch.no_grad()
def ranking_hits(scores, heldout, exclude, k, candidates=None):
    """scores: (B, n_items) -> hits (B, k) float and n_relevant (B,) for the batch's users.

    heldout, exclude: CSR (B, n_items) rows. Excluded items are set to -inf in place; with
    `candidates` (CSR (B, n_items), the sampled protocol) so is every item outside them.
    """
    device = scores.device
    n_items = scores.shape[1]
    if candidates is not None:
        keep_only(scores, candidates)
    rank_out(scores, exclude)
    top = top_k_items(scores, min(k, n_items))  # (B, k')
    # Held-out (row, item) pairs as sorted keys row * n_items + item; a hit is a key found.
    row, col = _csr_rows_to_torch(heldout, device)
    keys = row * n_items + col  # sorted: CSR order
    query = torch.arange(top.shape[0], device=device).unsqueeze(1) * n_items + top
    found = torch.searchsorted(keys, query).clamp(max=max(keys.numel() - 1, 0))
    hits = (keys[found] == query).to(scores.dtype) if keys.numel() else torch.zeros_like(query, dtype=scores.dtype)
    if hits.shape[1] < k:  # fewer items than K: the missing ranks are misses
        hits = torch.nn.functional.pad(hits, (0, k - hits.shape[1]))
    n_relevant = torch.from_numpy(heldout.indptr[1:] - heldout.indptr[:-1]).to(device=device, dtype=scores.dtype)
    return hits, n_relevant


@contextlib.contextmanager
def full_precision(device):
    """fp32 products while scoring on CUDA, even where training allows TF32: rankings then match
    the CPU's (a TF32 product keeps 10 bits of mantissa, enough to reorder close scores)."""
    if getattr(device, "type", str(device)) != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def checked_scores(model, users, history):
    """model.full_scores(users, history), checked to be the (B, n_items) matrix the contract asks."""
    scores = model.full_scores(users, history)
    expected = (len(users), history.shape[1])
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ContractError(
            f"{type(model).__name__}.full_scores(users, history) returned {got}; expected a tensor of shape "
            f"(B, n_items) = {expected}"
        )
    return scores


@torch.no_grad()
def evaluate_sums(model, loader, metrics, device):
    """Sum of each metric over the loader's users, and how many users: (sums (M,) float64, count (1,)),
    both on `device`."""
    k_max = max(k for _, _, k in metrics)
    sums = torch.zeros(len(metrics), dtype=torch.float64, device=device)
    count = torch.zeros(1, dtype=torch.float64, device=device)
    batches = Progress(loader, len(loader), "evaluation", enabled=distributed.rank() == 0)
    with full_precision(device):
        for batch in batches:
            users = torch.from_numpy(batch.users).to(device)
            scores = checked_scores(model, users, batch.exclude)  # (B, n_items)
            hits, n_relevant = ranking_hits(scores.float(), batch.heldout, batch.exclude, k_max, batch.candidates)
            for j, (_, fn, k) in enumerate(metrics):
                sums[j] += fn(hits[:, :k], n_relevant).sum().double()
            count += len(batch.users)
    return sums, count


def reduce_means(sums, count):
    """Means over every rank's users: the sums and count all-reduced (tensors on the training
    device, as NCCL needs), then one read on the host."""
    totals = all_reduce_sum(torch.cat([sums, count]))
    values = totals.tolist()  # one wait for the device
    return [value / max(values[-1], 1) for value in values[:-1]]


def evaluate(model, loader, metrics, device):
    """{metric name: mean over the loader's users}.

    Under torch.distributed, every rank passes its shard of the users (loader.shard) and the
    sums are added over ranks, so each rank gets the figures of a single-process evaluation.
    """
    was_training = model.training
    model.eval()
    sums, count = evaluate_sums(model, loader, metrics, device)
    model.train(was_training)
    return {name: value for (name, _, _), value in zip(metrics, reduce_means(sums, count))}
