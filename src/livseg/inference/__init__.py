"""Using a trained network: :func:`livseg.inference.segment.segment` takes one CT to a liver mask
on the CT's own grid (preprocess -> network -> back to the input grid -> post-process), with the
model loaded once by :func:`livseg.inference.segment.load_model`; ``postprocess`` is the LiTS
rule (largest connected component, hole filling); ``predict`` is the batch driver behind
``livseg predict`` (many files, one model load, masks, statistics, previews). Depends on data and
nn, never on training.
"""
