"""Data: the on-disk sequence format, the synthetic benchmark, real data and public-layout readers.

- `Sequence`, `load_sequence`, `write_sequence`: one format for everything (see ``sequence.py``).
- `generate` (``python -m spectral_tracking.data.synthetic``): the cached synthetic benchmark.
- `load_consistent4d`, `load_gart`, `load_sc4d`: readers of other layouts into a `Sequence`.
- `select_views` (views = 1 | 2 | 4), `shift_canonical`, `initial_overlap`, `shift_record`.
- `FrameViewDataset`, `SequenceDataModule`: (frame, time, view, camera, image, mask) items.
"""

from spectral_tracking.data.consistent4d import load_consistent4d
from spectral_tracking.data.datamodule import FrameViewDataset, SequenceDataModule
from spectral_tracking.data.formats import decode_coco_rle, encode_coco_rle, load_gart, load_sc4d
from spectral_tracking.data.sequence import (
    DataNotFoundError, Sequence, SequenceFormatError, load_sequence, normalize_scene, write_sequence,
)
from spectral_tracking.data.shift import initial_overlap, mask_iou, shift_canonical, shift_record
from spectral_tracking.data.views import TRAIN_AZIMUTHS, select_views



def __getattr__(name: str):
    # Imported lazily so ``python -m spectral_tracking.data.synthetic`` does not load it twice.
    if name in ("generate", "PRESETS", "DONUT_PRESETS"):
        from spectral_tracking.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'spectral_tracking.data' has no attribute {name!r}")


__all__ = [
    "DONUT_PRESETS", "PRESETS", "TRAIN_AZIMUTHS", "DataNotFoundError", "FrameViewDataset", "Sequence",
    "SequenceDataModule", "SequenceFormatError", "decode_coco_rle", "encode_coco_rle", "generate",
    "initial_overlap", "load_consistent4d", "load_gart", "load_sc4d", "load_sequence", "mask_iou",
    "normalize_scene", "select_views", "shift_canonical", "shift_record", "write_sequence",
]
