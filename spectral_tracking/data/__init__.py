"""Data: one registry of readers, each returning the same `Sequence` (see ``registry.py``).

- `DATASETS` (name -> reader), `load_dataset(ds, resolution)`: the front door; a tracking-ready,
  normalised `Sequence` with its ground truth (`Sequence.ground_truth`). `read_dataset`: the raw
  reader output (fit.py uses it), `detect_type`: which reader a folder needs, `check_dataset_config`:
  a ``dataset`` key left at ``???`` named before anything is read.
- `Sequence`, `normalized`, `normalize_scene`: the in-memory sequence and its standard frame.
- `load_sequence`, `write_sequence`: the project's on-disk format (``folder.py``).
- `generate` (``python -m spectral_tracking.data.synthetic``), `PRESETS`, `DONUT_PRESETS`: the
  cached synthetic benchmark.
- `load_consistent4d`, `load_gart`, `load_sc4d`, `load_nerf_synthetic`: readers of other layouts.
- `select_views` (views = 1 | 2 | 4).
- `DataError` (`SequenceFormatError`, `DataNotFoundError`): every problem with the data.
"""

from spectral_tracking.data.consistent4d import load_consistent4d
from spectral_tracking.data.folder import load_sequence, write_sequence
from spectral_tracking.data.gart import load_gart
from spectral_tracking.data.nerf_synthetic import load_nerf_synthetic
from spectral_tracking.data.presets import DONUT_PRESETS, PRESETS
from spectral_tracking.data.registry import DATASETS, check_dataset_config, detect_type, load_dataset, read_dataset
from spectral_tracking.data.rle import decode_coco_rle, encode_coco_rle
from spectral_tracking.data.sc4d import load_sc4d
from spectral_tracking.data.sequence import Sequence, normalize_scene, normalized
from spectral_tracking.data.views import TRAIN_AZIMUTHS, select_views
from spectral_tracking.errors import DataError, DataNotFoundError, SequenceFormatError


def __getattr__(name: str):
    # Imported lazily so ``python -m spectral_tracking.data.synthetic`` does not load it twice.
    if name == "generate":
        from spectral_tracking.data.synthetic import generate

        return generate
    raise AttributeError(f"module 'spectral_tracking.data' has no attribute {name!r}")


__all__ = [
    "DATASETS", "DONUT_PRESETS", "PRESETS", "TRAIN_AZIMUTHS", "DataError", "DataNotFoundError", "Sequence",
    "SequenceFormatError", "check_dataset_config", "decode_coco_rle", "detect_type", "encode_coco_rle", "generate",
    "load_consistent4d", "load_dataset", "load_gart", "load_nerf_synthetic", "load_sc4d", "load_sequence",
    "normalize_scene", "normalized", "read_dataset", "select_views", "write_sequence",
]
