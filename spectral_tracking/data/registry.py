"""The front door for data: one registry of dataset readers, one loader that returns a tracking-ready
`Sequence`.

Every entry of `DATASETS` is a reader ``read(ds, resolution, require_canonical=True) -> Sequence``:
``ds`` is the ``dataset`` config group (``conf/dataset/<name>.yaml``: a mapping with ``type`` and
the reader's keys), ``resolution`` the square image size in pixels (None: as stored, where the
format stores images; generated datasets need it). A reader returns the data in its own world
frame; `load_dataset` adds what tracking needs on top: a canonical asset, at least two frames, and
the standard frame (asset at bounding radius 0.5, `normalized`).

==================  ======================  ==================================================
name                reader file             what
==================  ======================  ==================================================
``synthetic``       ``synthetic.py``        procedural creatures with known motion (generated, cached)
``donut``           ``donut.py``            the real donut asset with procedural motion (cached)
``consistent4d``    ``consistent4d.py``     a monocular video plus the asset fitted to frame 0
``sc4d``            ``sc4d.py``             an SC4D / GSGD output folder
``gart``            ``gart.py``             a GART dog video plus its rest-pose asset
``folder``          ``folder.py``           this project's own on-disk format
``nerf_synthetic``  ``nerf_synthetic.py``   a still multi-view capture (fit.py only)
==================  ======================  ==================================================

Readers are imported on first use, so ``python -m spectral_tracking.data.synthetic`` runs its
module once.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from spectral_tracking.data.sequence import Sequence, normalized
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError


class Reader(Protocol):
    def __call__(self, ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence: ...


class _ReaderModule:
    """``from_config`` of a reader module, imported on the first call."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __call__(self, ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
        return importlib.import_module(self.module).from_config(ds, resolution, require_canonical)

    def __repr__(self) -> str:
        return f"<dataset reader {self.module}.from_config>"


DATASETS: dict[str, Reader] = {
    name: _ReaderModule(f"spectral_tracking.data.{name}")
    for name in ("synthetic", "donut", "consistent4d", "sc4d", "gart", "folder", "nerf_synthetic")
}


def read_dataset(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The sequence named by a ``dataset`` config group, as its reader returns it (own world frame;
    a canonical only where the data has one, unless ``require_canonical``)."""
    from spectral_tracking.errors import ConfigError

    check_dataset_config(ds)
    kind = ds["type"]
    if kind not in DATASETS:
        raise ConfigError(f"dataset.type: unknown dataset type {kind!r} ({', '.join(DATASETS)})")
    return DATASETS[kind](ds, resolution, require_canonical)


_KEY_EXAMPLES = {"path": "<folder>", "canonical": "<canonical.ply>", "name": "<name>"}


def check_dataset_config(ds: Mapping, prefix: str = "dataset") -> None:
    """`ConfigError` for a key of the ``dataset`` group left at ``???`` (mandatory, e.g. ``path`` of
    ``dataset=folder``): name the key and how to set it, instead of reading a folder called ``???``."""
    from omegaconf import DictConfig, OmegaConf

    from spectral_tracking.errors import ConfigError

    for key in list(ds.keys()):
        unset = OmegaConf.is_missing(ds, key) if isinstance(ds, DictConfig) else ds[key] == "???"
        if not unset and key in ("path", "canonical", "asset", "root") and str(ds[key]).strip() == "":
            raise ConfigError(f"{prefix}.{key} is empty (an empty value would read the current folder): give "
                              f"{prefix}.{key}={_KEY_EXAMPLES.get(str(key), '<folder>')}")
        if unset:
            kind = ds.get("type", "?") if not (isinstance(ds, DictConfig) and OmegaConf.is_missing(ds, "type")) else "?"
            raise ConfigError(f"{prefix}.{key} must be set (dataset={kind} has no default): add "
                              f"{prefix}.{key}={_KEY_EXAMPLES.get(str(key), '<value>')} to the command line")


def load_dataset(ds: Mapping, resolution: int, sequence: Sequence | None = None) -> Sequence:
    """The tracking-ready sequence named by a ``dataset`` config group (generated and cached where
    synthetic), or ``sequence`` itself for ``dataset=memory`` (the Python API's): with its canonical
    asset, at least two frames, in the standard frame (asset at bounding radius 0.5, cameras and
    ground truth moved with it, ``meta["normalization"]``), and its ground truth (`Sequence.ground_truth`)."""
    from spectral_tracking.errors import ConfigError

    kind = ds["type"]
    if (kind == "memory") != (sequence is not None):
        raise ConfigError("dataset=memory is the Python API's (spectral_tracking.track(canonical, sequence)): it needs "
                          "the sequence in memory" if sequence is None else
                          f"a sequence was given in memory but dataset={kind}; use dataset=memory")
    seq = sequence if sequence is not None else read_dataset(ds, resolution, require_canonical=True)
    if seq.static:
        raise SequenceFormatError(f"dataset={kind}: {seq.meta.get('folder', 'the data')} is a still capture (one frame); "
                                  "tracking needs a video. Fit a canonical asset to it with fit.py instead")
    if seq.canonical is None:
        raise DataNotFoundError(f"dataset={kind}: the sequence has no canonical asset")
    return normalized(seq)


def detect_type(path: str | Path) -> str:
    """The reader for a folder, from what it holds: ``nerf_synthetic`` (``transforms_*.json``),
    ``folder`` (``cameras.json``) or ``consistent4d`` (numbered PNGs ``0.png, 1.png, ...``)."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such folder")
    if not path.is_dir():
        raise SequenceFormatError(f"{path}: not a folder (expected a sequence folder, a Consistent4D video folder or a "
                                  "NeRF-synthetic folder)")
    if any(path.glob("transforms_*.json")):
        return "nerf_synthetic"
    if (path / "cameras.json").is_file():
        return "folder"
    if any(re.fullmatch(r"\d+\.png", p.name) for p in path.glob("*.png")):
        return "consistent4d"
    raise SequenceFormatError(
        f"{path}: cannot tell the data type: no transforms_*.json (NeRF-synthetic), no cameras.json (sequence folder) and "
        "no numbered PNGs 0.png, 1.png, ... (Consistent4D video); no cameras found. Set the type explicitly or fix the folder"
    )
