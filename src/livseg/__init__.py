"""livseg: liver segmentation in abdominal CT with a 3D U-Net.

The public API, by pipeline stage (see README.md):

    load_volume, save_mask, Volume   read a CT (NIfTI, DICOM series, .mha/.nrrd), write a mask
    get_preset                       the named run configurations (paper, default, demo)
    train                            dataset -> run folder with best.pt / last.pt
    load_model, segment              checkpoint -> model; one CT -> liver mask on its own grid
    evaluate                         a checkpoint scored on labelled cases, on both grids
    make_phantom                     a synthetic CT with liver labels

Each name is imported from its stage module on first use (module ``__getattr__``), so that
``import livseg`` stays fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_volume": "livseg.data.io.volume",
    "save_mask": "livseg.data.io.volume",
    "Volume": "livseg.data.io.volume",
    "get_preset": "livseg.config",
    "train": "livseg.training.train",
    "evaluate": "livseg.evaluation.evaluate",
    "load_model": "livseg.inference.segment",
    "segment": "livseg.inference.segment",
    "make_phantom": "livseg.phantom.generator",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'livseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
