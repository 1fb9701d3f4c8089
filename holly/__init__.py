"""holly: reconstruct a 3D point cloud from 2D localisation-microscopy images with unknown poses.

A reproducible reimplementation of HOLLy (Blundell et al., Frontiers in Bioinformatics 2021).
The method lives in a handful of modules: :mod:`holly.method.geometry` (rotations),
:mod:`holly.method.render` (the differentiable Gaussian point renderer), :mod:`holly.method.model`
(the pose CNN and the learnable cloud), :mod:`holly.data.simulate` (simulated training data),
:mod:`holly.train.trainer` (the training loop), :mod:`holly.results.evaluate` (mirror-aware
scoring). The stages are sub-packages, each importing only those below it: base modules
(errors, config, atomic, checksums, units) <- method <- data <- run <- {train, results} <-
{commands, cli, plan}; docs/architecture.md maps which module to open for each kind of change.
"""

__version__ = "0.1.0"
