"""The cloud rebuilt at fixed poses: the M step of hard EM with a global refit.

The refinement interleaves small steps on the cloud (refine.points_lr) with steps on poses that
keep moving, and a first cloud that holds part of a chiral shape's mirror image (the CNN
phase's does) keeps it there. A rebuild drops the points and fits a new cloud from their
moment-matched blob at the table's poses, held, for hundreds of batches at a larger step, as
cryo-EM's projection-matching ab initio reconstructs its volume from scratch every iteration:
only the poses the old cloud gave are carried over. On the fully labelled simulated helix the
CNN phase's cloud (Chamfer / blob 0.53, as near the helix as its mirror image) rebuilt three
times, each after a fresh search of every pose, scored 0.24 in one hand (tools/hand_em.py); at
30 % labelling a round's poses are too weak to choose a hand from such a mixture, though they
keep one. The blob is not what helps: fitted from the last cloud itself instead, the same
rounds score 0.25; the long fit at poses held after a search of every pose is. The blob is kept
because it carries nothing of the old points but their moments (docs/maintainer-notes.md, "A
global refit").
"""

from __future__ import annotations

import torch

from holly.method.cloudsymmetry import orbit, project
from holly.method.refine import PoseTable, RenderSpec, pose_losses

# The rebuilt cloud must travel from a blob across the whole shape within a few hundred steps:
# five times the refinement's default step (refine.points_lr 1e-3, made for small moves); at
# 5e-3 a fit at the true poses reaches what 1,500 steps give in ~800 (tools/fixed_pose_fit.py).
REBUILD_LR = 5e-3
SHIFT_LR = 1e-3  # the image-plane shifts (model units) move with the new cloud's centre


def moment_blob(points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """As many points as ``points [P, 3]`` drawn from the Gaussian of their mean and
    covariance (a floor on the covariance keeps a collapsed cloud drawable)."""
    cloud = points.detach().double().cpu()  # drawn on the CPU: the generator is a CPU one
    mean = cloud.mean(0)
    cov = torch.cov(cloud.T) + 1e-9 * torch.eye(3, dtype=cloud.dtype)
    normal = torch.randn(len(cloud), 3, generator=gen, dtype=cloud.dtype)
    return (mean + normal @ torch.linalg.cholesky(cov).T).to(points)


def rebuild_cloud(
    points: torch.Tensor,
    table: PoseTable,
    target_of,
    spec: RenderSpec,
    steps: int,
    batch_size: int,
    gen: torch.Generator,
    symmetry: int = 1,
) -> float:
    """Replace ``points [P, 3]`` (in place) by a cloud fitted from their moment-matched blob
    to the images of the ``table``'s rows at its rotations, held (its shifts are fitted along
    and written back): ``steps`` batches of ``batch_size`` seeded rows, each row's normalised
    images given by ``target_of(rows)``; kept ``symmetry``-fold symmetric about z when over 1,
    as the refinement keeps it. Returns the last batch's mean loss per image."""
    rows = torch.arange(len(table), device=points.device)
    rotations, shifts, sigma = (t.detach() for t in table.pose(rows))
    cloud = moment_blob(points, gen)
    if symmetry > 1:  # one part's blob and its turns (a projected blob would gather on the axis)
        cloud = orbit(cloud[: len(cloud) // symmetry], symmetry)
    cloud.requires_grad_(True)
    shifts = shifts.clone().requires_grad_(True)
    opt = torch.optim.Adam(
        [{"params": [cloud], "lr": REBUILD_LR}, {"params": [shifts], "lr": SHIFT_LR}]
    )
    for _ in range(steps):
        idx = torch.randperm(len(table), generator=gen)[:batch_size].to(points.device)
        loss = pose_losses(cloud, rotations[idx], shifts[idx], sigma[idx], target_of(idx), spec)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if symmetry > 1:
            with torch.no_grad():
                cloud.copy_(project(cloud, symmetry))
    with torch.no_grad():
        points.copy_(cloud)
        table.x[:, 3:5] = shifts
    return float(loss.detach().mean())
