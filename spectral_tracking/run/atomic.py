"""Files written so that a reader sees the old file or the complete new one, never a part.

Checkpoints that a failed write cannot destroy.

Lightning's own writer builds the file elsewhere and copies it over ``last.ckpt``; a copy that hits a
full disk (or crosses filesystems) leaves a truncated ``last.ckpt`` and the run's progress is gone.
`AtomicCheckpointIO` writes ``.<name>.<pid>.tmp`` in the checkpoint's own folder, syncs it, keeps the
previous checkpoint as ``<stem>.prev.ckpt`` and only then renames the new file into place
(``os.replace``: atomic on one filesystem). `load_checkpoint_or_previous` picks the newest file that loads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from spectral_tracking.errors import CorruptCheckpointError  # noqa: F401  (raised here)

log = logging.getLogger(__name__)


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a synced temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_torch_save(obj: Any, path: Path, keep_previous: bool = True) -> Path:
    """``torch.save(obj, path)`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # torch's writer reports a failed write as "[enforce fail at inline_container.cc..."
                if "inline_container" not in str(e):
                    raise
                raise _failed_write(path, str(e)) from e
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            link = path.with_name(f".{path.name}.{os.getpid()}.prev.tmp")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _failed_write(path: Path, detail: str) -> OSError:
    """The OSError a failed torch.save stands for: ENOSPC where the disk has under 64 MB left, else EIO."""
    import errno
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    code = errno.ENOSPC if free is not None and free < 64 * 2**20 else errno.EIO
    return OSError(code, f"{os.strerror(code)} (torch.save: {detail.strip().splitlines()[0][:120]})", str(path))


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint: storage_options are not supported")
        atomic_torch_save(checkpoint, Path(path))


def _load(path: Path) -> tuple[dict | None, str | None]:
    """(the checkpoint, None) if ``path`` loads as a Lightning checkpoint, else (None, the reason)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: any unpickling / zip error
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        return None, "not a Lightning checkpoint (no state_dict)"
    return ckpt, None


def load_checkpoint_or_previous(path: Path) -> tuple[Path, dict]:
    """(path, its checkpoint) if ``path`` loads; else its ``.prev`` copy and checkpoint (with a
    warning); else CorruptCheckpointError naming the file and what to do."""
    path = Path(path)
    ckpt, reason = _load(path)
    if ckpt is not None:
        return path, ckpt
    prev = previous_path(path)
    if prev.exists():
        ckpt, _ = _load(prev)
        if ckpt is not None:
            log.warning("%s is unreadable (%s); resuming from the previous checkpoint %s", path, reason, prev)
            return prev, ckpt
    raise CorruptCheckpointError(
        f"{path}: the checkpoint is unreadable ({reason}) and no previous checkpoint loads; give another ckpt_path, "
        f"or, for a run folder's own checkpoints/last.ckpt, run again with skip_finished=false to start that folder over"
    )
