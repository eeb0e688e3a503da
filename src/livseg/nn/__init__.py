"""The network and what defines it: the paper's 3D U-Net (``model``), AdvancedComboLoss and its
parts (``losses``), and the self-describing checkpoint file that carries a trained network's
configuration and weights from training to inference (``checkpoint``). Depends on
:mod:`livseg.config` and :mod:`livseg.data.io` only.
"""
