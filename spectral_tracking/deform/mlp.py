"""`mlp`: a TimeNet (the deformation MLP of SC-GS / SC4D / GSGD) moving the control points.

The network runs on the J control points, not on the N Gaussians; skinning carries the motion to
the Gaussians. Input: the positional encoding of the control point's canonical position (10
frequencies) and of the time t in [0, 1] (6 frequencies). Body: 8 layers of width 256 with ReLU, the
encoded input concatenated back in after layer ``skip`` (0-based, default 4). Heads: a translation
dxyz [3] (world units) and a quaternion [4] (w, x, y, z). The heads are zero-initialised (quaternion
bias (1, 0, 0, 0)), so a new network is exactly the identity.

``precision="bf16"`` runs the body's layers under bf16 autocast (weights, Adam state, the encoding
and the two heads stay float32): on a CPU with AVX512-BF16 the TimeNet's forward + backward is about
4x faster, and the outputs differ from float32 by about 0.5% of their size (beyond the paper, which
trains in float32; `benchmarks/step.py --precision` and the README measure both). ``"auto"`` (the
configs' default) is bf16 where the hardware has bf16 arithmetic (`bf16_is_fast`: a CUDA GPU that
supports it, a CPU with AVX512-BF16 or AMX) and float32 elsewhere, where emulated bf16 would be slower.

Positions enter the encoding normalised by the asset's bounding sphere, ``(c - center) /
asset_radius`` (in [-1, 1]), so the encoding's frequencies mean the same thing for any asset scale.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from spectral_tracking.deform.base import Deformation
from spectral_tracking.gaussians import Gaussians


def positional_encoding(x: Tensor, num_freqs: int, window: Tensor | None = None) -> Tensor:
    """NeRF encoding [..., D] -> [..., D (1 + 2 F)]: x, then sin(2^k x), cos(2^k x) for k < F, each
    frequency k scaled by ``window[k]`` (BARF's coarse-to-fine; None: all 1)."""
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [F]
    xf = (x[..., None, :] * freqs[:, None]).flatten(-2)  # [..., F D]
    sin, cos = torch.sin(xf), torch.cos(xf)
    if window is not None:
        w = window.to(x).repeat_interleave(x.shape[-1])  # [F D], the layout of xf
        sin, cos = sin * w, cos * w
    return torch.cat([x, sin, cos], dim=-1)


@lru_cache(maxsize=None)
def bf16_is_fast(device_type: str) -> bool:
    """Whether ``device_type`` ("cpu", "cuda", ...) computes in bf16 natively (precision="auto")."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:  # not Linux: no cheap way to know, keep float32
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


class TimeNet(nn.Module):
    """MLP (position [J, 3], time t) -> (dxyz [J, 3], quaternion [J, 4]); identity at initialisation.

    pos_freqs / time_freqs: encoding frequencies (10 / 6). depth / width: body layers (8 / 256).
    skip: the encoded input is concatenated to the output of body layer ``skip`` (0-based).
    precision: "fp32" (the paper), "bf16" (the body under bf16 autocast) or "auto" (bf16 where
    `bf16_is_fast`); see the module docstring.
    """

    PRECISIONS = ("fp32", "bf16", "auto")

    def __init__(self, pos_freqs: int = 10, time_freqs: int = 6, depth: int = 8, width: int = 256, skip: int = 4,
                 precision: str = "fp32") -> None:
        super().__init__()
        if precision not in self.PRECISIONS:
            raise ValueError(f"TimeNet: precision must be fp32, bf16 or auto, got {precision!r}")
        self.precision = precision
        if depth < 1 or width < 1:
            raise ValueError(f"TimeNet: depth and width must be >= 1, got depth={depth}, width={width}")
        if not 0 <= skip < depth - 1 and skip != -1:
            raise ValueError(f"TimeNet: skip must be in [0, {depth - 2}] (or -1 for none), got {skip}")
        self.pos_freqs, self.time_freqs, self.skip = pos_freqs, time_freqs, skip
        # [pos_freqs] weights of the position encoding's frequencies while they open (`MLPDeformation.
        # set_position_window`); None: all open. Not state: the run sets it from its step
        self.pos_window: Tensor | None = None
        self.in_dim = 3 * (1 + 2 * pos_freqs) + (1 + 2 * time_freqs)
        layers = [nn.Linear(self.in_dim, width)]
        for i in range(1, depth):
            layers.append(nn.Linear(width + (self.in_dim if i - 1 == skip else 0), width))
        self.body = nn.ModuleList(layers)
        self.head_translation = nn.Linear(width, 3)
        self.head_rotation = nn.Linear(width, 4)
        for head in (self.head_translation, self.head_rotation):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        with torch.no_grad():
            self.head_rotation.bias[0] = 1.0

    def uses_bf16(self, device_type: str) -> bool:
        """Whether the body runs under bf16 autocast on ``device_type`` ("auto": where `bf16_is_fast`)."""
        return self.precision == "bf16" or (self.precision == "auto" and bf16_is_fast(device_type))

    def forward(self, points: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """points: [J, 3] (normalised to about [-1, 1]); t: 0-dim time in [0, 1], or times [F].
        Returns (dxyz [J, 3], quaternion [J, 4] wxyz, not normalised), or [F, J, 3] and [F, J, 4]
        for times [F]: one pass over F * J rows, the same numbers as F calls (row-wise maths)."""
        times = t.reshape(-1, 1).to(points)  # [F, 1]
        F, J = times.shape[0], points.shape[0]
        x = torch.cat(
            [
                positional_encoding(points, self.pos_freqs, self.pos_window).expand(F, -1, -1),
                positional_encoding(times, self.time_freqs)[:, None, :].expand(-1, J, -1),
            ],
            dim=-1,
        ).reshape(F * J, self.in_dim)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.uses_bf16(x.device.type)):
            h = x
            for i, layer in enumerate(self.body):
                h = torch.relu(layer(h))
                if i == self.skip:
                    h = torch.cat([x, h], dim=-1)
        h = h.float()  # the heads in float32: the motion itself keeps full precision
        dxyz, rotation = self.head_translation(h).reshape(F, J, 3), self.head_rotation(h).reshape(F, J, 4)
        return (dxyz, rotation) if t.dim() == 1 else (dxyz[0], rotation[0])


class MLPDeformation(Deformation):
    """``mlp``: TimeNet on control points + skinning (SC4D). Parameter groups: "deform" (+ "radius").

    Keyword arguments beyond the base class (see `Deformation`): pos_freqs, time_freqs, depth,
    width, skip, precision (see `TimeNet`).
    """

    def __init__(
        self,
        canonical: Gaussians,
        num_frames: int,
        pos_freqs: int = 10,
        time_freqs: int = 6,
        depth: int = 8,
        width: int = 256,
        skip: int = 4,
        precision: str = "fp32",
        **base,
    ) -> None:
        """base: the keyword arguments of `Deformation` (num_control_points, num_neighbors, ...)."""
        super().__init__(canonical, num_frames, **base)
        self.net = TimeNet(pos_freqs, time_freqs, depth, width, skip, precision).to(self.canonical_means)
        self.register_buffer(
            "_net_points", (self.canonical_control_points - self.center) / self.asset_radius
        )  # [J, 3] network input positions

    @property
    def position_frequencies(self) -> int:
        """How many frequencies encode the control points' positions (``pos_freqs``)."""
        return self.net.pos_freqs

    def set_position_window(self, window: Tensor | None) -> None:
        """Weights [pos_freqs] in [0, 1] of the position encoding's frequencies (None: all 1): the run's
        coarse-to-fine schedule (``deform.pos_anneal``, `spectral_tracking.tracking.module`)."""
        if window is not None and tuple(window.shape) != (self.net.pos_freqs,):
            raise ValueError(f"set_position_window: expected {self.net.pos_freqs} weights, got shape {list(window.shape)}")
        self.net.pos_window = window

    def local_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor]:
        return self.net(self._net_points, t)

    def local_motions(self, times: list[tuple[Tensor, float]]) -> list[tuple[Tensor, Tensor]]:
        """All the step's frames in one TimeNet pass over [F * J] rows (one GEMM per layer instead
        of F; see `Deformation.local_motions`)."""
        if len(times) == 1:
            return [self.local_motion(*times[0])]
        dxyz, rotations = self.net(self._net_points, torch.stack([t for t, _ in times]))
        return list(zip(dxyz.unbind(0), rotations.unbind(0)))

    def _param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super()._param_groups()
        groups["deform"] = list(self.net.parameters())
        return groups
