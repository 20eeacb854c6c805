"""What outputs would cost, counted before any of them is encoded."""

from __future__ import annotations

from typing import Any


def output_size(value: Any, element_limit: int, text_limit: int) -> tuple[int, int]:
    """Elements and characters of text in outputs (tensors, sequences, maps),
    counted without copying and stopping as soon as either limit is passed."""
    import numpy as np

    elements = text = 0
    pending = [value]
    while pending and elements <= element_limit and text <= text_limit:
        item = pending.pop()
        if isinstance(item, np.ndarray):
            elements += item.size
            if item.dtype.kind in "OUS" and elements <= element_limit:
                text += sum(len(str(v)) for v in item.flat)
        elif isinstance(item, dict):
            elements += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            elements += 0 if item is value else len(item)
            pending.extend(item)
        elif isinstance(item, (str, bytes)):
            elements += 1
            text += len(item)
        else:
            elements += 1
    return elements, text
