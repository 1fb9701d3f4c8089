"""Rigid alignment of point clouds: Kabsch fits, ICP, mirror-aware multi-start alignment and a
cloud's own near-symmetries.

From 2D orthographic projections with unknown poses, a structure is only determined up to a
global rotation, a global translation and a reflection (the mirror image with mirrored poses gives
the same images). :func:`align` removes those freedoms before two clouds are compared: it centres
both and runs rigid ICP from many start rotations, for the cloud as given and for its mirror image
``diag(1, 1, -1)`` (:data:`MIRROR`), and keeps the alignment with the lowest Chamfer distance.
:func:`self_symmetries` registers a cloud onto itself; per-image pose refinement
(:mod:`holly.method.refine`) uses its rotations as candidate twins of a pose. :func:`kabsch` is
holly's one Kabsch/Procrustes fit (the 3D viewer's overlay uses it too).

numpy and scipy only on the arithmetic path; float64 throughout.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from holly.method.geometry import geodesic_angle, random_rotations

log = logging.getLogger(__name__)

MIRROR = np.diag([1.0, 1.0, -1.0])  # the depth flip: invisible in orthographic projection
COARSE_POINTS = 256  # clouds are subsampled to this many points for the multi-start stage
COARSE_ITERATIONS = 15


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align`: ``aligned = source @ rotation.T + translation``.

    Attributes
    ----------
    rotation : ndarray [3, 3]
        Orthogonal; ``det = -1`` when ``handedness == "mirrored"``.
    translation : ndarray [3]
    handedness : {"proper", "mirrored"}
    aligned : ndarray [N, 3]
        The source points moved onto the target.
    chamfer : float
        Chamfer distance (not squared) of ``aligned`` to the target.
    chamfer_other_handedness : float or None
        Best Chamfer distance with the other handedness (None if mirroring was not tried). Close
        to ``chamfer`` for achiral shapes, where handedness cannot be told apart.
    """

    rotation: np.ndarray
    translation: np.ndarray
    handedness: str
    aligned: np.ndarray
    chamfer: float
    chamfer_other_handedness: float | None


# ---------------------------------------------------------------- rotations


def octahedral_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube: signed permutation matrices with det +1 → [24, 3, 3]."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.stack(mats)


def _principal_axes(x: np.ndarray) -> np.ndarray:
    """Eigenvectors (columns, descending variance) of centred ``x [N,3]``, as a proper rotation."""
    _, vecs = np.linalg.eigh(np.cov(x.T) if len(x) > 1 else np.eye(3))
    vecs = vecs[:, ::-1]
    if np.linalg.det(vecs) < 0:
        vecs[:, 2] *= -1
    return vecs


def _start_rotations(src: np.ndarray, tgt: np.ndarray, n_random: int, seed: int) -> np.ndarray:
    """Start rotations [S, 3, 3] for multi-start ICP of centred ``src`` onto centred ``tgt``.

    The 24 cube rotations twice: in the world frame, and between the two clouds' principal-axes
    frames (``V_t O V_s^T``, which covers every sign and order ambiguity of the principal axes),
    plus ``n_random`` seeded random rotations.
    """
    octa = octahedral_rotations()
    v_s, v_t = _principal_axes(src), _principal_axes(tgt)
    pca = v_t @ octa @ v_s.T
    rand = random_rotations(n_random, np.random.default_rng(seed))
    return np.concatenate([octa, pca, rand])


def kabsch(
    p: np.ndarray, q: np.ndarray, allow_reflection: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Best proper rotation and translation mapping ``p`` onto ``q``, batched (Kabsch).

    The one Kabsch/Procrustes fit of holly (the viewer's :func:`holly.results.viewer.rigid_fit`
    uses it, with ``allow_reflection``: then the best orthogonal matrix, of either determinant).

    Parameters
    ----------
    p, q : ndarray [S, K, 3]
        Corresponding points.

    Returns
    -------
    rotation : ndarray [S, 3, 3]
        ``det = +1`` always (reflections are tried explicitly by the caller, never here).
    translation : ndarray [S, 3]
    """
    mp, mq = p.mean(1), q.mean(1)
    h = np.swapaxes(p - mp[:, None], 1, 2) @ (q - mq[:, None])  # [S,3,3] cross-covariance
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)))
    d[(d == 0) | allow_reflection] = 1.0
    fix = np.ones((len(p), 3))
    fix[:, 2] = d
    rot = np.swapaxes(vt, 1, 2) @ (fix[:, :, None] * np.swapaxes(u, 1, 2))
    return rot, mq - np.einsum("sij,sj->si", rot, mp)


# ---------------------------------------------------------------- ICP


def _icp(
    src: np.ndarray,
    tgt: np.ndarray,
    rot: np.ndarray,
    trans: np.ndarray,
    iterations: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched rigid ICP with symmetric nearest-neighbour correspondences.

    Both k-d trees are built once: source→target queries move the source, target→source queries
    move the target back by the inverse transform.

    Parameters
    ----------
    src [N, 3], tgt [M, 3] : ndarray
    rot [S, 3, 3], trans [S, 3] : ndarray
        One start transform per candidate.
    iterations : int
        Maximum number of iterations.
    tol : float
        Stop when no candidate's Chamfer distance improves by more than ``tol``.

    Returns
    -------
    rot [S, 3, 3], trans [S, 3], chamfer [S]
    """
    src_tree, tgt_tree = cKDTree(src), cKDTree(tgt)
    s, n, m = len(rot), len(src), len(tgt)
    previous = np.full(s, np.inf)
    for _ in range(iterations + 1):
        moved = src @ np.swapaxes(rot, 1, 2) + trans[:, None]  # [S,N,3]: R p + t
        d_st, j = tgt_tree.query(moved.reshape(-1, 3))
        back = (tgt[None] - trans[:, None]) @ rot  # [S,M,3]: R^T (q - t)
        d_ts, i = src_tree.query(back.reshape(-1, 3))
        chamfer = 0.5 * (d_st.reshape(s, n).mean(1) + d_ts.reshape(s, m).mean(1))
        if np.all(previous - chamfer <= tol):
            break
        previous = chamfer
        p = np.concatenate([np.broadcast_to(src, (s, n, 3)), src[i.reshape(s, m)]], 1)
        q = np.concatenate([tgt[j.reshape(s, n)], np.broadcast_to(tgt, (s, m, 3))], 1)
        rot, trans = kabsch(p, q)
    return rot, trans, chamfer


def self_symmetries(
    x: np.ndarray, count: int, seed: int = 0, n_random: int = 128, min_separation_deg: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """The cloud's near-symmetries: proper rotations ``g`` about its centroid with ``g X ≈ X``.

    Self-registration: multi-start ICP of the centred cloud onto itself (the 24 cube rotations
    plus ``n_random`` seeded random starts). Every start converges to a local optimum; distinct
    optima (more than ``min_separation_deg`` apart) are ranked by their Chamfer distance. The
    identity (Chamfer 0) always comes first. No threshold decides what counts as a symmetry:
    the caller scores the candidates against images, where a false one simply loses.

    Parameters
    ----------
    x : ndarray [N, 3]
    count : int
        At most this many rotations are returned.

    Returns
    -------
    rotations : ndarray [J, 3, 3], J <= count
    chamfer : ndarray [J]
        Chamfer distance between ``g X`` and ``X`` (model units), ascending.
    """
    c = np.asarray(x, dtype=np.float64)
    c = c - c.mean(0)
    rng = np.random.default_rng(seed)
    sub = _subsample(c, COARSE_POINTS, rng)
    starts = np.concatenate([octahedral_rotations(), random_rotations(n_random, rng)])
    scale = max(np.sqrt((sub**2).sum(1).mean()), 1e-12)
    rot, _, cost = _icp(sub, sub, starts, np.zeros((len(starts), 3)), 40, 1e-6 * scale)
    chosen, costs = [np.eye(3)], [0.0]
    for i in np.argsort(cost, kind="stable"):
        if len(chosen) >= count:
            break
        far = np.degrees(
            geodesic_angle(np.stack(chosen), np.broadcast_to(rot[i], (len(chosen), 3, 3)))
        )
        if np.all(far > min_separation_deg):
            chosen.append(rot[i])
            costs.append(float(cost[i]))
    return np.stack(chosen), np.asarray(costs)


def _subsample(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= k else x[rng.choice(len(x), k, replace=False)]


def _best_for_handedness(
    src: np.ndarray, tgt: np.ndarray, n_random: int, n_refine: int, max_iter: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Multi-start ICP of centred ``src`` onto centred ``tgt``; returns (rot, trans, chamfer)."""
    rng = np.random.default_rng(seed)
    starts = _start_rotations(src, tgt, n_random, seed)
    scale = max(np.sqrt((tgt**2).sum(1).mean()), 1e-12)
    # coarse stage: every start, subsampled clouds, a few iterations
    src_c, tgt_c = _subsample(src, COARSE_POINTS, rng), _subsample(tgt, COARSE_POINTS, rng)
    zero = np.zeros((len(starts), 3))
    rot, trans, cost = _icp(src_c, tgt_c, starts, zero, COARSE_ITERATIONS, 1e-4 * scale)
    keep = np.argsort(cost)[:n_refine]
    # fine stage: the best few, full clouds, to convergence
    rot, trans, cost = _icp(src, tgt, rot[keep], trans[keep], max_iter, 1e-7 * scale)
    best = int(np.argmin(cost))
    return rot[best], trans[best], float(cost[best])


def as_cloud(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) < 1:
        raise ValueError(f"{name} must be a non-empty [N, 3] array, got shape {x.shape}")
    return x


def align(
    source: np.ndarray,
    target: np.ndarray,
    *,
    allow_mirror: bool = True,
    n_starts: int = 8,
    n_refine: int = 3,
    max_iter: int = 50,
    seed: int = 0,
) -> Alignment:
    """Rigidly align ``source`` onto ``target``, optionally allowing a reflection.

    Both clouds are centred. For each handedness (the source as given, and mirrored by
    ``diag(1, 1, -1)``) rigid point-to-point ICP with symmetric nearest-neighbour correspondences
    runs from 48 + ``n_starts`` start rotations (the 24 cube rotations in the world frame and
    between the clouds' principal-axes frames, plus seeded random ones): a coarse pass on
    clouds subsampled to 256 points, then the ``n_refine`` best starts on the full clouds to
    convergence. The alignment with the lowest Chamfer distance wins. No scaling.

    Parameters
    ----------
    source : ndarray [N, 3]
        Cloud to move (e.g. the reconstruction).
    target : ndarray [M, 3]
        Reference cloud (e.g. the ground truth).
    allow_mirror : bool
        Also try the mirror image of ``source``.
    n_starts : int
        Number of random start rotations in addition to the 48 structured ones.
    n_refine : int
        Number of best coarse candidates refined on the full clouds, per handedness.
    max_iter : int
        Maximum ICP iterations of the refinement.
    seed : int
        Seed of the random starts and of the coarse subsampling.

    Returns
    -------
    Alignment
    """
    source, target = as_cloud(source, "source"), as_cloud(target, "target")
    c_s, c_t = source.mean(0), target.mean(0)
    src, tgt = source - c_s, target - c_t
    results = {}
    for handedness in ("proper", "mirrored") if allow_mirror else ("proper",):
        flip = MIRROR if handedness == "mirrored" else np.eye(3)
        rot, trans, cost = _best_for_handedness(src @ flip, tgt, n_starts, n_refine, max_iter, seed)
        results[handedness] = (rot @ flip, trans, cost)
    best = min(results, key=lambda h: results[h][2])
    rot, trans, cost = results[best]
    translation = c_t + trans - rot @ c_s
    others = [results[h][2] for h in results if h != best]
    log.debug("align: %s, chamfer %.4g (other handedness %s)", best, cost, others)
    return Alignment(
        rotation=rot,
        translation=translation,
        handedness=best,
        aligned=source @ rot.T + translation,
        chamfer=cost,
        chamfer_other_handedness=others[0] if others else None,
    )
