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
- larger ones search a k-d tree in C++ (``csrc/knn.cpp``, on the CPU): it compares only the points
  its planes cannot rule out, but ranks them by the same distances and the same tie rule, so the
  answer is the brute force's, bit for bit. Where the C++ kernel cannot be built (no compiler) they
  fall back to the brute force after one warning.

(Before, the large path queried scipy's ``cKDTree``: scipy is no longer a dependency, and with it
installed ``import pytorch_lightning`` takes 0.7 s more, since torchmetrics then imports
``scipy.signal``.)
"""

from __future__ import annotations

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
            d2, idx = _tree(q.double(), r.double().to(q.device), k, exclude_self, chunk_size)
    return d2.to(queries.dtype), idx


def _brute_force(q: Tensor, r: Tensor, k: int, exclude_self: bool, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Every pair, rows in chunks; a stable sort puts equal distances in index order."""
    chunk = max(1, min(chunk_size, _CHUNK_PAIRS // max(1, r.shape[0])))
    rows = torch.arange(q.shape[0], device=q.device)
    d2_out, idx_out = [], []
    for s in range(0, q.shape[0], chunk):
        d2 = (q[s:s + chunk, None, :] - r[None, :, :]).square().sum(-1)  # [C, J]
        if exclude_self:
            d2[torch.arange(d2.shape[0], device=q.device), rows[s:s + chunk]] = float("inf")
        vals, ids = torch.sort(d2, dim=1, stable=True)
        d2_out.append(vals[:, :k])
        idx_out.append(ids[:, :k])
    return torch.cat(d2_out), torch.cat(idx_out)


FALLBACK = "knn falls back to comparing every pair (slower, same answer)"


def _tree(q: Tensor, r: Tensor, k: int, exclude_self: bool, chunk_size: int) -> tuple[Tensor, Tensor]:
    """The C++ k-d tree search on float64 CPU copies; the brute force where the kernel cannot be built."""
    from spectral_tracking.runtime import native

    library = native.load_or_warn("knn", FALLBACK)
    if library is None:
        return _brute_force(q, r, k, exclude_self, chunk_size)
    qc, rc = q.cpu().double().contiguous(), r.cpu().double().contiguous()
    d2 = torch.empty(qc.shape[0], k, dtype=torch.float64)
    idx = torch.empty(qc.shape[0], k, dtype=torch.int64)
    library.function("st_knn", torch.float64)(
        N=qc.shape[0], J=rc.shape[0], k=k, exclude_self=int(exclude_self), queries=qc, refs=rc, d2_out=d2,
        idx_out=idx, n_threads=torch.get_num_threads(),
    )
    return d2.to(q.device), idx.to(q.device)
