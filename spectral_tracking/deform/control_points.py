"""Sparse control points and linear-blend skinning of Gaussians (SC-GS / SC4D / GSGD style).

A deformation does not move the N Gaussians one by one. It moves J << N *control points*, sampled
from the canonical means by farthest point sampling, and every Gaussian follows its K nearest
control points:

    mu'  = sum_k w_k [R_k (mu - c_k) + c_k + dc_k]
    q'   = normalise(sum_k w_k q_k) (x) q
    w_k  = softmax_k(-d_k^2 / (2 r_k^2))          (= exp(-d^2 / (2 r^2)), normalised)

with ``c_k`` [J, 3] the canonical control points, ``dc_k`` [J, 3] their translations, ``q_k``
[J, 4] their rotations as (w, x, y, z) quaternions (``R_k`` the matrix), ``d_k`` the distance from
the Gaussian to control point k and ``r_k`` the control point's radius.

Implementation notes (why the fast path looks the way it does):

- The neighbour search happens once, at construction (`spectral_tracking.knn.knn`: brute force in
  chunks for small sets, a C++ k-d tree for large ones).
- `skin` never builds [N, K, 3, 3]. It writes the motion as a displacement,
  ``mu' = mu + (sum_k w_k M_k) mu + sum_k w_k b_k`` with ``M_k = R_k - I`` and
  ``b_k = dc_k - M_k c_k``, so the per-Gaussian work is one blend of a [J, 16] table (M, b and the
  quaternion offset) and a 3x3 mat-vec. The blend is a sparse [N, J] x [J, 16] product with K
  non-zeros per row (`blend`), and its backward pass a product with the transpose, which avoids
  the scatter-add a gather's backward would do. Writing the motion as a displacement also
  makes the identity exact: with dc = 0 and q = (1, 0, 0, 0), M and b are exactly zero, whatever
  rounding the weights carry. Quaternions are blended the same way, ``(1,0,0,0) + sum_k w_k
  (q_k - (1,0,0,0))``, which is the formula above whenever the weights sum to one.
- The per-Gaussian end (the 3x3 mat-vec, the quaternion's normalisation and product) is one C++
  pass each way on the CPU (``csrc/skin.cpp``, `_SkinTailCPU`); `_skin_tail` is its torch twin.
- While tracking (the weights and the canonical asset constant) the blend and the end are one C++
  pass each way (`_SkinFusedCPU`): the [N, 16] blend is never written, and the backward computes it
  again. At 1M Gaussians that array is 64 MB, past the cache, written and read back each way: the
  skinning's forward + backward goes from 62 to 24 ms (level at 300k; the same bits as the two steps).
- `skin_reference` is the plain, literal twin of `skin` (the formula above, [N, K, 3, 3] and all);
  the tests compare the two, outputs and gradients.
- Quaternion blending is linear (then normalised), as written above; it assumes neighbouring
  control point rotations lie in the same hemisphere (q and -q are the same rotation but do not blend
  alike). Deformations start at (1, 0, 0, 0) and move smoothly, so this holds in practice.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spectral_tracking.gaussians import quat_multiply, quat_to_rotmat
from spectral_tracking.knn import check_points, knn  # noqa: F401  (knn: spectral_tracking.deform exports it from here)
from spectral_tracking.runtime.native import SUFFIXES, load_or_warn

_IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)


def farthest_point_sampling(points: Tensor, num_samples: int, start_index: int = 0) -> Tensor:
    """Indices [J] of ``num_samples`` points picked greedily, each the farthest from those before.

    points: [N, 3]. Deterministic: the first pick is ``start_index``, ties go to the lowest index.
    Raises ``ValueError`` if J > N, J < 1, or the points hold fewer than J distinct positions
    (FPS would have to pick the same position twice).
    Cost: J iterations of an [N] distance update (800 x 50k is well under a second on a CPU).
    """
    check_points(points, "points", "farthest_point_sampling")
    n = points.shape[0]
    if num_samples < 1:
        raise ValueError(f"farthest_point_sampling: num_samples must be >= 1, got {num_samples}")
    if num_samples > n:
        raise ValueError(
            f"farthest_point_sampling: asked for {num_samples} control points but the asset has only "
            f"{n} Gaussians (num_control_points must be <= the number of Gaussians)"
        )
    if not 0 <= start_index < n:
        raise ValueError(f"farthest_point_sampling: start_index {start_index} outside [0, {n - 1}]")
    pts = points.detach()
    chosen = torch.empty(num_samples, dtype=torch.long, device=pts.device)
    min_d2 = torch.full((n,), float("inf"), dtype=pts.dtype, device=pts.device)
    idx = torch.tensor(start_index, device=pts.device)
    for j in range(num_samples):
        chosen[j] = idx
        d2 = (pts - pts[idx]).square().sum(-1)
        torch.minimum(min_d2, d2, out=min_d2)
        if j + 1 < num_samples:
            idx = torch.argmax(min_d2)
    # A repeated pick only happens once every remaining point coincides with a chosen one.
    if torch.unique(pts[chosen], dim=0).shape[0] != num_samples:
        distinct = torch.unique(pts, dim=0).shape[0]
        raise ValueError(
            f"farthest_point_sampling: asked for {num_samples} control points but the points hold only "
            f"{distinct} distinct positions"
        )
    return chosen


def control_point_radius(control_points: Tensor, num_neighbors: int = 3) -> Tensor:
    """Per-control-point kernel radius r [J]: mean distance to its ``num_neighbors`` nearest others.

    control_points: [J, 3]. J = 1 has no spacing to measure and raises. A radius that would be zero
    (coincident control points) is floored at 1e-8 times the points' extent (at least 1e-12).
    """
    check_points(control_points, "control_points", "control_point_radius")
    j = control_points.shape[0]
    if j < 2:
        raise ValueError("control_point_radius: need at least 2 control points to measure their spacing")
    k = min(num_neighbors, j - 1)
    d2, _ = knn(control_points, control_points, k + 1)
    r = d2[:, 1:].sqrt().mean(-1)  # column 0 is the point itself
    extent = float((control_points.max(0).values - control_points.min(0).values).max())
    return r.clamp_min(max(1e-8 * extent, 1e-12))


def skinning_weights(dist2: Tensor, radius: Tensor) -> Tensor:
    """Normalised Gaussian-kernel weights [N, K] = softmax_k(-d^2 / (2 r^2)).

    dist2: [N, K] squared distances to the K bound control points; radius: [N, K] their radii
    (gathered per neighbour; differentiable, so radii can be learned). The softmax is the
    normalised exp(-d^2/(2r^2)) computed stably: a Gaussian far from every control point still
    gets finite weights that sum to one.
    """
    return torch.softmax(-dist2 / (2 * radius.square()), dim=-1)


class SkinBinding(NamedTuple):
    """Which control points each Gaussian follows, plus the index plumbing of the fast blend.

    neighbor_index: [N, K] long, the K bound control points of each Gaussian, ascending per row.
    The rest is the same sparsity pattern as compressed rows, for `blend`: the [N, J] weight matrix
    W (``crow`` [N+1], ``col`` [N*K]) and its transpose (``crow_t`` [J+1], ``col_t`` [N*K], with
    ``perm`` [N*K] reordering W's values into W^T's order). Build it with `make_binding`.
    """

    neighbor_index: Tensor
    crow: Tensor
    col: Tensor
    crow_t: Tensor
    col_t: Tensor
    perm: Tensor
    num_control_points: int


def make_binding(neighbor_index: Tensor, num_control_points: int) -> SkinBinding:
    """`SkinBinding` of ``neighbor_index`` [N, K] (each row ascending, values in [0, J))."""
    if neighbor_index.dim() != 2 or neighbor_index.shape[0] == 0 or neighbor_index.shape[1] == 0:
        raise ValueError(f"make_binding: neighbor_index must have shape [N, K] with N, K >= 1, got {list(neighbor_index.shape)}")
    if neighbor_index.dtype != torch.long:
        raise ValueError(f"make_binding: neighbor_index must be int64, got {neighbor_index.dtype}")
    if int(neighbor_index.min()) < 0 or int(neighbor_index.max()) >= num_control_points:
        raise ValueError(f"make_binding: neighbor_index values must lie in [0, {num_control_points - 1}]")
    if neighbor_index.shape[1] > 1 and not bool((neighbor_index[:, 1:] >= neighbor_index[:, :-1]).all()):
        raise ValueError("make_binding: neighbor_index rows must be sorted ascending (see bind_to_control_points)")
    n, k = neighbor_index.shape
    dev = neighbor_index.device
    col = neighbor_index.reshape(-1).contiguous()
    crow = torch.arange(0, n * k + 1, k, device=dev)
    perm = torch.argsort(col, stable=True)
    counts = torch.bincount(col, minlength=num_control_points)
    crow_t = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), counts.cumsum(0)])
    col_t = torch.arange(n, device=dev).repeat_interleave(k)[perm].contiguous()
    return SkinBinding(neighbor_index, crow, col, crow_t, col_t, perm, num_control_points)


def bind_to_control_points(means: Tensor, control_points: Tensor, k: int = 4) -> tuple[SkinBinding, Tensor]:
    """Bind every Gaussian to its ``k`` nearest control points.

    means: [N, 3]; control_points: [J, 3]. Returns (binding, squared distances [N, k] in the
    binding's neighbour order). Raises ``ValueError`` if k > J.
    """
    if k > control_points.shape[0]:
        raise ValueError(
            f"bind_to_control_points: each Gaussian needs k = {k} control points but there are only "
            f"{control_points.shape[0]}"
        )
    d2, idx = knn(means, control_points, k)
    idx, order = idx.sort(dim=1)
    return make_binding(idx, control_points.shape[0]), d2.gather(1, order)


def _sparse_csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is noise here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


class _BlendRows(torch.autograd.Function):
    """out[n] = sum_k weights[n, k] * table[index[n, k]]: a sparse [N, J] x dense [J, C] product.

    On the CPU (float32 / float64) both ways run in ``csrc/skin.cpp``: the forward row by row, the
    table's gradient streaming the Gaussians once into per-chunk copies of the small table, summed in
    chunk order (the same bits at any thread count; at 300k Gaussians, quiet, 0.64x the wall time of
    torch's products at one thread and 0.75x at two, `benchmarks/deform.py`). Elsewhere, torch's sparse CSR products: the backward multiplies
    by the transposed pattern instead of scattering [N, K, C] gradients with atomics.
    """

    @staticmethod
    def forward(ctx, table: Tensor, weights: Tensor, binding: SkinBinding, weights_t: Tensor | None) -> Tensor:
        n = binding.neighbor_index.shape[0]
        ctx.binding = binding
        ctx.weights_t = weights_t
        ctx.save_for_backward(table, weights)
        kernel = _blend_kernel(table, weights)
        if kernel is not None:  # csrc/skin.cpp: the same sums, k ascending, one thread per row
            out = table.new_empty(n, table.shape[1])
            kernel.function("st_blend_fwd", table.dtype)(
                N=n, K=weights.shape[1], C=table.shape[1], J=table.shape[0], index=binding.neighbor_index,
                weights=weights.detach(), table=table.detach(), out=out, n_threads=torch.get_num_threads())
            return out
        W = _sparse_csr(binding.crow, binding.col, weights.reshape(-1), (n, binding.num_control_points))
        return W @ table

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        table, weights = ctx.saved_tensors
        b: SkinBinding = ctx.binding
        grad_out = grad_out.contiguous()
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            n = b.neighbor_index.shape[0]
            kernel = _blend_kernel(table, weights)
            if kernel is not None and grad_out.dtype == table.dtype:  # csrc/skin.cpp: the Gaussians streamed once
                grad_table = torch.empty_like(table)
                kernel.function("st_blend_bwd_table", table.dtype)(
                    N=n, K=weights.shape[1], C=table.shape[1], J=table.shape[0], index=b.neighbor_index,
                    weights=weights.detach(), grad=grad_out, grad_table=grad_table, n_threads=torch.get_num_threads())
            else:
                values_t = ctx.weights_t if ctx.weights_t is not None else weights.reshape(-1)[b.perm]
                WT = _sparse_csr(b.crow_t, b.col_t, values_t, (b.num_control_points, n))
                grad_table = WT @ grad_out
        if ctx.needs_input_grad[1]:
            grad_weights = (table[b.neighbor_index] * grad_out[:, None, :]).sum(-1)
        return grad_table, grad_weights, None, None


def _blend_kernel(table: Tensor, weights: Tensor):
    """``csrc/skin.cpp`` for `blend` where it applies (CPU, float32 / float64 alike), else None."""
    if table.device.type != "cpu" or table.dtype not in SUFFIXES or weights.dtype != table.dtype:
        return None
    return _skin_kernel()


def transposed_weights(binding: SkinBinding, weights: Tensor) -> Tensor:
    """The values of W^T [N*K] in the order `blend`'s backward pass needs (precompute if fixed)."""
    return weights.reshape(-1)[binding.perm].contiguous()


def blend(binding: SkinBinding, weights: Tensor, table: Tensor, weights_t: Tensor | None = None) -> Tensor:
    """Weighted sum of per-control-point rows: [N, C] = sum_k weights[:, k] * table[index[:, k]].

    weights: [N, K]; table: [J, C]. Fast (sparse matmul), differentiable in weights and table.
    weights_t: optional ``transposed_weights(binding, weights)``, to save a gather per backward pass
    when the weights are fixed (it must match ``weights``; only pass it for constant weights).
    The twin `blend_reference` gathers [N, K, C] explicitly.
    """
    if table.dim() != 2 or table.shape[0] != binding.num_control_points:
        raise ValueError(f"blend: table must have shape [{binding.num_control_points}, C], got {list(table.shape)}")
    if weights.shape != binding.neighbor_index.shape:
        raise ValueError(f"blend: weights must have shape {list(binding.neighbor_index.shape)}, got {list(weights.shape)}")
    return _BlendRows.apply(table.contiguous(), weights.contiguous(), binding, weights_t)


def blend_reference(binding: SkinBinding, weights: Tensor, table: Tensor) -> Tensor:
    """Plain twin of `blend`: gather [N, K, C], multiply, sum."""
    return (weights[..., None] * table[binding.neighbor_index]).sum(1)


def _motion_table(control_points: Tensor, translations: Tensor, rotations: Tensor) -> Tensor:
    """Per-control-point [J, 16] table: M = R - I (9), b = dc - M c (3), q - (1,0,0,0) (4)."""
    R = quat_to_rotmat(rotations)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    M = R - eye  # [J, 3, 3]
    b = translations - (M @ control_points[:, :, None])[..., 0]  # [J, 3]
    dq = rotations - rotations.new_tensor(_IDENTITY_QUAT)  # [J, 4]
    return torch.cat([M.reshape(-1, 9), b, dq], dim=-1)


def _check_motion(control_points: Tensor, translations: Tensor, rotations: Tensor, source: str) -> None:
    j = control_points.shape[0]
    if translations.shape != (j, 3):
        raise ValueError(f"{source}: translations must have shape [{j}, 3], got {list(translations.shape)}")
    if rotations.shape != (j, 4):
        raise ValueError(f"{source}: rotations must have shape [{j}, 4] (w, x, y, z), got {list(rotations.shape)}")


def skin(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    control_points: Tensor,  # [J, 3]
    binding: SkinBinding,
    weights: Tensor,  # [N, K]
    translations: Tensor,  # [J, 3]
    rotations: Tensor,  # [J, 4]
    fast: bool = True,
    weights_t: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Move Gaussians with their control points (see the module docstring).

    means: [N, 3] canonical centres; quats: [N, 4] canonical (w, x, y, z) rotations;
    control_points: [J, 3] canonical control points c_k; binding: from `bind_to_control_points`;
    weights: [N, K] skinning weights (rows sum to one); translations: [J, 3] dc_k;
    rotations: [J, 4] q_k (w, x, y, z, normalised here). ``fast=False`` swaps the fast blend
    for its gather twin and the C++ per-Gaussian end (``csrc/skin.cpp``, CPU) for its torch twin (same numbers); ``weights_t``: see `blend`. Returns (means' [N, 3], quats' [N, 4]); differentiable
    w.r.t. every tensor argument.
    """
    _check_motion(control_points, translations, rotations, "skin")
    table = _motion_table(control_points, translations, rotations)  # [J, 16]
    if fast and _fused_applies(table, weights, means, quats):
        return _SkinFusedCPU.apply(table, weights, binding, means, quats)
    mixed = blend(binding, weights, table, weights_t) if fast else blend_reference(binding, weights, table)  # [N, 16]
    if fast and mixed.device.type == "cpu" and mixed.dtype in SUFFIXES and means.dtype == quats.dtype == mixed.dtype \
            and _skin_kernel() is not None:
        return _SkinTailCPU.apply(mixed, means, quats)
    return _skin_tail(mixed, means, quats)


def _skin_tail(mixed: Tensor, means: Tensor, quats: Tensor) -> tuple[Tensor, Tensor]:
    """mean' = mean + A mean + b, quat' = normalise(dq + (1, 0, 0, 0)) (x) quat from mixed [N, 16]
    (the torch twin of ``csrc/skin.cpp``)."""
    # split (not three slices): its backward concatenates the three gradients instead of
    # zero-filling three [N, 16] buffers and summing them.
    A, b, dq = mixed.split([9, 3, 4], dim=1)
    new_means = means + (A.reshape(-1, 3, 3) @ means[:, :, None])[..., 0] + b
    q_blend = dq + mixed.new_tensor(_IDENTITY_QUAT)
    q_blend = q_blend / q_blend.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return new_means, quat_multiply(q_blend, quats)


SKIN_FALLBACK = "skinning falls back to its torch code (slower, same result)"


def _skin_kernel():
    return load_or_warn("skin", SKIN_FALLBACK)


def _fused_applies(table: Tensor, weights: Tensor, means: Tensor, quats: Tensor) -> bool:
    """Whether `skin` can take `_SkinFusedCPU`: on the CPU, one dtype the kernel has, and only the motion
    table needing a gradient (tracking: the weights and the canonical asset are constants)."""
    return (table.device.type == "cpu" and table.dtype in SUFFIXES
            and weights.dtype == means.dtype == quats.dtype == table.dtype
            and not (weights.requires_grad or means.requires_grad or quats.requires_grad)
            and _skin_kernel() is not None)


class _SkinFusedCPU(torch.autograd.Function):
    """`blend` and `_skin_tail` in one C++ pass each way (``csrc/skin.cpp``, ``st_skin_fused_*``): the
    [N, 16] blend is never written; the backward computes it again and gives the table's gradient only."""

    @staticmethod
    def forward(ctx, table, weights, binding, means, quats):
        table, weights, means, quats = (t.detach().contiguous() for t in (table, weights, means, quats))
        n, k = weights.shape
        new_means, new_quats = torch.empty_like(means), torch.empty_like(quats)
        _skin_kernel().function("st_skin_fused_fwd", table.dtype)(
            N=n, K=k, J=table.shape[0], index=binding.neighbor_index, weights=weights, table=table, means=means,
            quats=quats, new_means=new_means, new_quats=new_quats, n_threads=torch.get_num_threads())
        ctx.binding = binding
        ctx.save_for_backward(table, weights, means, quats)
        return new_means, new_quats

    @staticmethod
    @once_differentiable
    def backward(ctx, v_new_means, v_new_quats):
        table, weights, means, quats = ctx.saved_tensors
        v_new_means = torch.zeros_like(means) if v_new_means is None else v_new_means.contiguous()
        v_new_quats = torch.zeros_like(quats) if v_new_quats is None else v_new_quats.contiguous()
        grad_table = torch.empty_like(table)
        n, k = weights.shape
        _skin_kernel().function("st_skin_fused_bwd", table.dtype)(
            N=n, K=k, J=table.shape[0], index=ctx.binding.neighbor_index, weights=weights, table=table, means=means,
            quats=quats, v_new_means=v_new_means, v_new_quats=v_new_quats, grad_table=grad_table,
            n_threads=torch.get_num_threads())
        return grad_table, None, None, None, None


class _SkinTailCPU(torch.autograd.Function):
    """`_skin_tail` in one C++ pass each way (``csrc/skin.cpp``): some 40 torch ops forward and 60
    backward on [N] tensors, about 1 ms a step at 3,000 Gaussians, become two calls."""

    @staticmethod
    def forward(ctx, mixed, means, quats):
        mixed, means, quats = (t.detach().contiguous() for t in (mixed, means, quats))
        n = mixed.shape[0]
        new_means, new_quats = torch.empty_like(means), torch.empty_like(quats)
        _skin_kernel().function("st_skin_fwd", mixed.dtype)(
            N=n, mixed=mixed, means=means, quats=quats, new_means=new_means, new_quats=new_quats,
            n_threads=torch.get_num_threads())
        ctx.save_for_backward(mixed, means, quats)
        return new_means, new_quats

    @staticmethod
    @once_differentiable
    def backward(ctx, v_new_means, v_new_quats):
        mixed, means, quats = ctx.saved_tensors
        v_new_means = torch.zeros_like(means) if v_new_means is None else v_new_means.contiguous()
        v_new_quats = torch.zeros_like(quats) if v_new_quats is None else v_new_quats.contiguous()
        # the canonical means and quaternions are constants while tracking: their gradients are skipped
        v_mixed = torch.empty_like(mixed)
        v_means = torch.empty_like(means) if ctx.needs_input_grad[1] else None
        v_quats = torch.empty_like(quats) if ctx.needs_input_grad[2] else None
        _skin_kernel().function("st_skin_bwd", mixed.dtype)(
            N=mixed.shape[0], mixed=mixed, means=means, quats=quats, v_new_means=v_new_means,
            v_new_quats=v_new_quats, v_mixed=v_mixed, v_means=v_means, v_quats=v_quats,
            n_threads=torch.get_num_threads())
        return v_mixed, v_means, v_quats


def skin_reference(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    control_points: Tensor,  # [J, 3]
    neighbor_index: Tensor,  # [N, K] long
    weights: Tensor,  # [N, K]
    translations: Tensor,  # [J, 3]
    rotations: Tensor,  # [J, 4]
) -> tuple[Tensor, Tensor]:
    """The literal formula, for tests: mu' = sum_k w_k [R_k (mu - c_k) + c_k + dc_k],
    q' = normalise(sum_k w_k q_k) (x) q. Same arguments and result as `skin`."""
    _check_motion(control_points, translations, rotations, "skin_reference")
    R = quat_to_rotmat(rotations)[neighbor_index]  # [N, K, 3, 3]
    c = control_points[neighbor_index]  # [N, K, 3]
    dc = translations[neighbor_index]  # [N, K, 3]
    local = (R @ (means[:, None, :] - c)[..., None])[..., 0] + c + dc  # [N, K, 3]
    new_means = (weights[..., None] * local).sum(1)
    q_blend = (weights[..., None] * rotations[neighbor_index]).sum(1)
    q_blend = q_blend / q_blend.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return new_means, quat_multiply(q_blend, quats)
