"""Measuring and showing results: ``metrics`` (Dice, Jaccard, VOE, RVD, ASSD, MSSD, HD95, in mm,
with documented empty-mask conventions), ``evaluate`` (a checkpoint scored on labelled cases on
the network grid and on each CT's own grid, summaries, report) and ``report`` (figures and the
HTML page). ``metrics`` and ``report`` are leaves (numpy/scipy, matplotlib) that training's
validation and curves and inference's previews use as well.
"""
