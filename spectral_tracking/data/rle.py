"""COCO run-length encoding of object masks (what GART stores per frame), without pycocotools."""

from __future__ import annotations

import numpy as np


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Decode pycocotools' compressed RLE string into run lengths.

    Each run is a variable-length integer of 5-bit groups (char - 48), least significant first;
    0x20 marks "more groups follow", and 0x10 in the last group is the sign. From the fourth run on,
    the value is stored as the difference to the run two places earlier.
    """
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("COCO RLE string ends in the middle of a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"COCO RLE string has an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def counts_to_rle_string(counts: list[int]) -> str:
    """Inverse of `rle_string_to_counts` (pycocotools' ``rleToString``)."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def decode_coco_rle(rle: dict) -> np.ndarray:
    """A COCO RLE dict {"size": [h, w], "counts": str | bytes | list[int]} -> uint8 mask [h, w] in {0, 1}.

    Runs alternate 0, 1, 0, ... starting with zeros, over the pixels in column-major order.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"COCO RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}"
                         + (f" with keys {sorted(rle)}" if isinstance(rle, dict) else ""))
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = rle_string_to_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("COCO RLE has negative run lengths")
    if sum(counts) != h * w:
        raise ValueError(f"COCO RLE runs cover {sum(counts)} pixels, but size {h}x{w} has {h * w}")
    values = np.arange(len(counts)) % 2
    flat = np.repeat(values.astype(np.uint8), counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def encode_coco_rle(mask: np.ndarray) -> dict:
    """uint8/bool mask [h, w] -> compressed COCO RLE dict (what pycocotools.mask.encode writes)."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    flat = m.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts_to_rle_string(counts).encode("ascii")}
