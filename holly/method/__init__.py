"""The method: what HOLLy computes, as pure functions and modules on tensors and arrays.

Rotations (:mod:`~holly.method.geometry`), the Gaussian point renderer
(:mod:`~holly.method.render`),
the pose CNN and the learnable cloud (:mod:`~holly.method.model`), the image loss
(:mod:`~holly.method.loss`), the sigma curriculum (:mod:`~holly.method.curriculum`), the pose
identities (:mod:`~holly.method.poses`), per-image pose refinement (:mod:`~holly.method.refine`) and
rigid alignment of clouds (:mod:`~holly.method.align`). Nothing here reads or writes a file; it
imports only the base modules (errors, config, units).
"""
