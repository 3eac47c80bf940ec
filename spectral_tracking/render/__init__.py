"""Differentiable Gaussian-splatting renderer: ``render(gaussians, cameras) -> RenderOutput``."""

from .render import BACKENDS, RenderOutput, render

__all__ = ["BACKENDS", "RenderOutput", "render"]
