"""livseg: liver segmentation in abdominal CT with a 3D U-Net.

The public API is imported lazily from the stage modules (io, preprocessing, data, model,
losses, metrics, training, inference, postprocess, report, phantom); see README.md.
"""

__version__ = "0.1.0"
