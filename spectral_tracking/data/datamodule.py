"""A map-style dataset over (frame, view) pairs and a thin Lightning DataModule around it.

The trainer may also sample frames and views straight from `Sequence` tensors; these wrappers are
for users who want ordinary DataLoaders.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from spectral_tracking.data.sequence import Sequence, load_sequence
from spectral_tracking.data.views import select_views


class FrameViewDataset(Dataset):
    """Items for every (frame, view) with view in ``views`` (frame-major order).

    Each item is a dict: frame (int), time (float in [0, 1]), view (int, index into the sequence's
    cameras), K [3, 3], viewmat [4, 4] (world-to-camera, OpenCV), image [H, W, 3] straight RGB in
    [0, 1], mask [H, W] in [0, 1]. Default collation stacks them into batches.
    """

    def __init__(self, sequence: Sequence, views: list[int]):
        if not views:
            raise ValueError("FrameViewDataset: no views given")
        bad = [v for v in views if not 0 <= v < sequence.num_views]
        if bad:
            raise ValueError(f"FrameViewDataset: view indices {bad} out of range for {sequence.num_views} views")
        self.sequence = sequence
        self.pairs = [(t, v) for t in range(sequence.num_frames) for v in views]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        t, v = self.pairs[i]
        s = self.sequence
        return {
            "frame": t, "time": float(s.time(t)), "view": v,
            "K": s.cameras.Ks[v], "viewmat": s.cameras.viewmats[v],
            "image": s.image(v, t), "mask": s.mask(v, t),
        }


class SequenceDataModule(pl.LightningDataModule):
    """Training items over ``sequence.train_views``, validation items over ``sequence.eval_views``.

    Give a loaded ``sequence`` or a sequence ``folder``; ``views`` (1, 2 or 4) re-selects the
    training views by azimuth (`select_views`).
    """

    def __init__(self, sequence: Sequence | None = None, folder: str | Path | None = None, views: int | None = None,
                 batch_size: int = 1, num_workers: int = 0, shuffle: bool = True):
        super().__init__()
        if (sequence is None) == (folder is None):
            raise ValueError("SequenceDataModule: give exactly one of sequence= or folder=")
        self.sequence, self.folder, self.views = sequence, folder, views
        self.batch_size, self.num_workers, self.shuffle = batch_size, num_workers, shuffle

    def setup(self, stage: str | None = None) -> None:
        if self.sequence is None:
            self.sequence = load_sequence(self.folder)
        if self.views is not None and self.sequence.meta.get("views") != self.views:
            self.sequence = select_views(self.sequence, self.views)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(FrameViewDataset(self.sequence, self.sequence.train_views), batch_size=self.batch_size,
                          shuffle=self.shuffle, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(0) if self.shuffle else None)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        if not self.sequence.eval_views:
            raise ValueError(
                f"SequenceDataModule: the sequence {self.sequence.meta.get('folder', '')} has no evaluation views "
                "(monocular data); evaluate on the training views or disable validation (limit_val_batches=0)")
        return DataLoader(FrameViewDataset(self.sequence, self.sequence.eval_views), batch_size=self.batch_size,
                          shuffle=False, num_workers=self.num_workers)
