"""holly: reconstruct a 3D point cloud from 2D localisation-microscopy images with unknown poses.

A reproducible reimplementation of HOLLy (Blundell et al., Frontiers in Bioinformatics 2021).
The method lives in a handful of modules: :mod:`holly.geometry` (rotations),
:mod:`holly.render` (the differentiable Gaussian point renderer), :mod:`holly.model` (the pose
CNN and the learnable cloud), :mod:`holly.simulate` (simulated training data),
:mod:`holly.train` (the training loop), :mod:`holly.evaluate` (mirror-aware scoring).
"""

__version__ = "0.1.0"
