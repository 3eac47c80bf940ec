"""k nearest neighbours of 3D points: the one neighbour search of the package.

Used to bind Gaussians to control points (`deform.control_points`), to link control points for
ARAP (`losses.arap.canonical_neighbors`) and to size Gaussians at initialisation (`fit.init`).

Semantics, whatever the path: neighbours come sorted by squared Euclidean distance, computed in
float64 as the sum of the squared coordinate differences; ties (equal distances, e.g. coincident
points) go to the lower reference index; with ``exclude_self`` (queries and refs are the same set)
each point's own index is never its neighbour, even when other points coincide with it.

Two paths give the same answer:
- small problems (N x J up to `BRUTE_FORCE_MAX` distances) compare every pair, in chunks of
  queries, on the tensors' device;
- larger ones query scipy's ``cKDTree`` on the CPU for a few candidates more than needed, re-rank
  them by the exact distances above, and redo by brute force only the rows where a tie reaches past
  the candidates (so the result never depends on how the tree orders equal distances).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BRUTE_FORCE_MAX = 1 << 20  # query x reference pairs compared directly; more go through the k-d tree
_CHUNK_PAIRS = 1 << 20  # pairs per brute-force chunk (a [C, J, 3] float64 difference is 24 MB)


def check_points(points: Tensor, name: str, source: str = "knn") -> None:
    """``ValueError`` naming ``source`` and ``name`` unless ``points`` is a non-empty, finite [N, 3]."""
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"{source}: {name} must have shape [N, 3], got {list(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError(f"{source}: {name} is empty (N = 0); there is nothing to sample or bind")
    if not torch.isfinite(points).all():
        bad = int((~torch.isfinite(points)).sum())
        raise ValueError(f"{source}: {name} holds {bad} non-finite values (NaN or inf)")


def knn(queries: Tensor, refs: Tensor, k: int, exclude_self: bool = False,
        chunk_size: int = 8192) -> tuple[Tensor, Tensor]:
    """The k nearest ``refs`` of every query.

    queries: [N, 3], refs: [J, 3] (with ``exclude_self``, the same J points). Returns (squared
    distances [N, k] ascending, in the queries' dtype; indices [N, k] long), on the queries' device.
    No gradient flows (neighbourhoods are a fixed structure).
    """
    check_points(queries, "queries")
    check_points(refs, "refs")
    n, j = queries.shape[0], refs.shape[0]
    available = j - 1 if exclude_self else j
    if exclude_self and n != j:
        raise ValueError(f"knn: exclude_self needs queries and refs to be the same points, got {n} and {j}")
    if not 1 <= k <= available:
        raise ValueError(f"knn: k must be in [1, {available}] (the number of reference points"
                         f"{' other than the point itself' if exclude_self else ''}), got {k}")
    with torch.no_grad():
        q, r = queries.detach(), refs.detach()
        if n * j <= BRUTE_FORCE_MAX:
            d2, idx = _brute_force(q.double(), r.double().to(q.device), k, exclude_self, chunk_size)
        else:
            d2, idx = _kd_tree(q.cpu().double().numpy(), r.cpu().double().numpy(), k, exclude_self)
            d2, idx = torch.from_numpy(d2).to(q.device), torch.from_numpy(idx).to(q.device)
    return d2.to(queries.dtype), idx


def _brute_force(q: Tensor, r: Tensor, k: int, exclude_self: bool, chunk_size: int,
                 rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every pair, rows in chunks; a stable sort puts equal distances in index order."""
    chunk = max(1, min(chunk_size, _CHUNK_PAIRS // max(1, r.shape[0])))
    rows = torch.arange(q.shape[0], device=q.device) if rows is None else rows
    d2_out, idx_out = [], []
    for s in range(0, q.shape[0], chunk):
        d2 = (q[s:s + chunk, None, :] - r[None, :, :]).square().sum(-1)  # [C, J]
        if exclude_self:
            d2[torch.arange(d2.shape[0], device=q.device), rows[s:s + chunk]] = float("inf")
        vals, ids = torch.sort(d2, dim=1, stable=True)
        d2_out.append(vals[:, :k])
        idx_out.append(ids[:, :k])
    return torch.cat(d2_out), torch.cat(idx_out)


def _exact_d2(q: np.ndarray, r: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Squared distances [N, m] from q [N, 3] to r[idx] [N, m, 3], summed like `_brute_force`."""
    diff = np.square(q[:, None, :] - r[idx])
    return (diff[..., 0] + diff[..., 1]) + diff[..., 2]


def _kd_tree(q: np.ndarray, r: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    n = q.shape[0]
    m = min(r.shape[0], k + 1 + int(exclude_self))  # one candidate past the last kept one shows ties
    _, cand = cKDTree(r).query(q, k=m)
    cand = cand.reshape(n, m).astype(np.int64)
    d2 = _exact_d2(q, r, cand)
    if exclude_self:
        d2[cand == np.arange(n)[:, None]] = np.inf
    order = np.lexsort((cand, d2), axis=1)  # by distance, then index
    d2, cand = np.take_along_axis(d2, order, 1), np.take_along_axis(cand, order, 1)
    # Rows whose k-th distance equals the next candidate's may have more tied points than the tree
    # returned (or a self-match pushed past the end): rank those rows against every point.
    need = d2[:, k - 1] >= d2[:, k] if m > k else np.zeros(n, bool)
    if exclude_self:
        need |= ~np.isfinite(d2[:, k - 1])
    if need.any():
        rows = np.flatnonzero(need)
        bd2, bidx = _brute_force(torch.from_numpy(q[rows]), torch.from_numpy(r), k, exclude_self, 8192,
                                 torch.from_numpy(rows))
        d2[rows, :k], cand[rows, :k] = bd2.numpy(), bidx.numpy()
    return d2[:, :k], cand[:, :k]
