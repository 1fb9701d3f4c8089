"""Pose hypotheses, candidate bookkeeping and per-image refinement (holly/method/poses.py,
refine.py)."""

import numpy as np
import pytest
import torch
from test_train import TINY

from holly.config import from_dict
from holly.data.shapes import load_shape
from holly.method.align import self_symmetries
from holly.method.geometry import axis_angle_to_matrix, geodesic_angle, random_rotations
from holly.method.loss import hypothesis_losses, min_over_hypotheses
from holly.method.model import HollyModel
from holly.method.poses import candidate_poses, flipped_image_pose, image_plane_shift
from holly.method.refine import (
    PoseTable,
    RenderSpec,
    best_candidates,
    fresh_search,
    normalised,
    pose_losses,
    refine_poses,
    search_candidates,
)
from holly.method.render import render


def _scene(n=40, batch=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=gen, dtype=dtype) * 2 - 1) * 0.9
    rotations = random_rotations(batch, gen, dtype)
    shifts = (torch.rand(batch, 2, generator=gen, dtype=dtype) - 0.5) * 0.4
    return points, rotations, shifts


@pytest.mark.parametrize("order", ["paper", "latest"])
def test_image_plane_shift_renders_the_same_image(order):
    points, rotations, t = _scene()
    a = render(points, rotations, t, 1.3, 32, 40, order=order)
    b = render(
        points, rotations, image_plane_shift(rotations, t, order), 1.3, 32, 40, order="latest"
    )
    assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize(
    "kind,dims", [("turn", (-2, -1)), ("mirror_x", (-1,)), ("mirror_y", (-2,))]
)
@pytest.mark.parametrize("size", [(32, 32), (32, 40)])
def test_flipped_image_pose_matches_the_flipped_pixels(kind, dims, size):
    """Exact at the project's viewport (centre at W/2): the flip includes the one-pixel shift."""
    h, w = size
    points, rotations, shifts = _scene()
    image = render(points, rotations, shifts, 1.1, h, w, order="latest")
    rot2, shift2 = flipped_image_pose(rotations, shifts, kind, h)
    flipped = render(points, rot2, shift2, 1.1, h, w, order="latest")
    assert torch.allclose(flipped, torch.flip(image, dims), atol=1e-12)
    # without the one-pixel term the identity fails: the bookkeeping matters
    naive = shifts.clone()
    naive[:, 0] *= -1 if kind in ("turn", "mirror_x") else 1
    naive[:, 1] *= -1 if kind in ("turn", "mirror_y") else 1
    wrong = render(points, rot2, naive, 1.1, h, w, order="latest")
    assert (wrong - torch.flip(image, dims)).abs().max() > 1e-3


def test_candidates_include_the_flip_about_the_projected_centroid():
    points, rotations, shifts = _scene(batch=3)
    centroid = points.mean(0)
    syms = torch.eye(3, dtype=points.dtype)[None]
    rot, s = candidate_poses(rotations[:, None], shifts, syms, centroid, flips=True)
    assert rot.shape == (3, 4, 3, 3) and s.shape == (3, 4, 2)
    assert torch.allclose(rot[:, 0], rotations) and torch.allclose(s[:, 0], shifts)
    # every candidate keeps the cloud's projected centroid where the hypothesis put it
    proj = (rot @ centroid)[..., :2] + s
    assert torch.allclose(proj, proj[:, :1].expand_as(proj), atol=1e-12)
    # and the in-plane turn of a rendering about that point is candidate 1
    turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=points.dtype))
    assert torch.allclose(rot[:, 1], turn @ rotations)


def test_min_over_hypotheses_sends_gradient_only_to_the_winner():
    cfg = from_dict(
        {
            "render": {"height": 32, "width": 32},
            "model": {"num_points": 30, "rotation": "6d", "pose_hypotheses": 3},
        }
    )
    model = HollyModel(cfg, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    target = render(
        torch.rand(30, 3, generator=gen) - 0.5,
        random_rotations(6, gen),
        torch.zeros(6, 2),
        2.0,
        32,
        32,
    )
    target = target * (1000 / target.sum())
    pred = model(target, 2.0)
    pred.hypotheses.retain_grad()
    losses = hypothesis_losses(pred.images, target, "batch", "masked_l1")
    assert losses.shape == (6, 3)
    loss, best = min_over_hypotheses(losses, epsilon=0.0)
    assert torch.isclose(loss, losses.min(1).values.sum())
    loss.backward()
    grad_norm = pred.hypotheses.grad.flatten(2).norm(dim=2)  # [B, K]
    winner = torch.nn.functional.one_hot(best, 3).bool()
    assert (grad_norm[winner] > 0).all()
    assert (grad_norm[~winner] == 0).all()
    # during warm-up every hypothesis learns
    pred = model(target, 2.0)
    pred.hypotheses.retain_grad()
    loss, _ = min_over_hypotheses(hypothesis_losses(pred.images, target, "batch", "l1"), 0.3)
    loss.backward()
    assert (pred.hypotheses.grad.flatten(2).norm(dim=2) > 0).all()


def _known_cloud_images(n_images=24, size=48, sigma=1.2, seed=0):
    cloud = torch.as_tensor(load_shape("tetrapod", 1.2), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    rot_true = random_rotations(n_images, gen)
    shift_true = (torch.rand(n_images, 2, generator=gen) - 0.5) * 0.2
    images = render(cloud, rot_true, shift_true, sigma, size, size, order="latest")
    spec = RenderSpec(size, size, "l1", 1e-4)
    return cloud, rot_true, shift_true, normalised(images), spec


def _median_deg(a, b):
    return float(np.degrees(geodesic_angle(a, b).median().item()))


def test_refinement_recovers_true_poses_from_symmetric_twins():
    """Start every image at a near-symmetric twin of its pose (wrong by 80-180 degrees, with a
    wrong shift): candidate search plus pose refinement finds the true poses again."""
    cloud, rot_true, shift_true, target, spec = _known_cloud_images()
    rots, chamfer = self_symmetries(cloud.double().numpy(), count=12)
    assert len(rots) >= 4  # the tetrahedral arms give near-symmetries
    twins = torch.as_tensor(rots[1:], dtype=torch.float32)
    pick = torch.arange(len(rot_true)) % len(twins)
    start = rot_true @ twins[pick]  # twins act on the object side
    assert _median_deg(start, rot_true) > 60
    sym = (torch.as_tensor(rots, dtype=torch.float32), cloud.mean(0))
    sigma = torch.full((len(start),), 1.2)
    shift_start = shift_true + 0.03
    rot, shift, _ = search_candidates(
        cloud, start[:, None], shift_start, sigma, target, spec, sym, flips=True
    )
    table = PoseTable(rot, shift, sigma)
    refine_poses(cloud, table, target, spec, steps=60, lr=0.01, batch_size=24)
    refined, _, _ = table.pose(torch.arange(len(table)))
    assert _median_deg(refined, rot_true) <= 3.0


def test_refinement_polishes_small_pose_errors():
    cloud, rot_true, shift_true, target, spec = _known_cloud_images(seed=1)
    gen = torch.Generator().manual_seed(5)
    axis = torch.nn.functional.normalize(torch.randn(len(rot_true), 3, generator=gen), dim=1)
    start = axis_angle_to_matrix(axis * np.radians(12)) @ rot_true
    table = PoseTable(start, shift_true, torch.full((len(start),), 1.2))
    before = _median_deg(start, rot_true)
    refine_poses(cloud, table, target, spec, steps=60, lr=0.01, batch_size=24)
    after = _median_deg(table.pose(torch.arange(len(table)))[0], rot_true)
    assert before > 11 and after <= 3.0


def test_best_candidates_picks_the_lowest_loss():
    cloud, rot_true, shift_true, target, spec = _known_cloud_images(n_images=4)
    wrong = random_rotations(4, torch.Generator().manual_seed(9))
    cands = torch.stack([wrong, rot_true], 1)  # true pose is candidate 1
    rot, _, index = best_candidates(
        cloud, cands, shift_true[:, None].expand(-1, 2, -1), torch.full((4,), 1.2), target, spec
    )
    assert index.tolist() == [1, 1, 1, 1]
    assert torch.allclose(rot, rot_true)


def test_a_fresh_search_leaves_wrong_poses_for_better_ones():
    """Rows at random wrong poses: a fresh search whose random rotations include each image's
    true one moves them there; rows already at their true poses stay."""
    cloud, rot_true, shift_true, target, spec = _known_cloud_images(seed=2)
    gen = torch.Generator().manual_seed(3)
    wrong = random_rotations(len(rot_true), gen)
    sigma = torch.full((len(rot_true),), 1.2)
    table = PoseTable(wrong, shift_true, sigma)
    assert _median_deg(wrong, rot_true) > 60
    rotations = torch.cat([random_rotations(40, gen), rot_true])
    rows = torch.arange(len(table))
    before = pose_losses(cloud, *table.pose(rows), target, spec)
    moved = fresh_search(cloud, table, rows, target, spec, rotations, 2, 30, 0.01)
    after = pose_losses(cloud, *table.pose(rows), target, spec)
    assert moved.float().mean() > 0.9 and bool((after < before).all())
    assert _median_deg(table.pose(rows)[0], rot_true) <= 3.0
    settled = PoseTable(rot_true, shift_true, sigma)
    moved = fresh_search(cloud, settled, rows, target, spec, rotations, 2, 30, 0.01)
    assert not moved.any() and _median_deg(settled.pose(rows)[0], rot_true) <= 1.0


# test_train's tiny run with three hypotheses and a tiny refinement stage
TINY_REFINE = {
    **TINY,
    "model": {**TINY["model"], "rotation": "6d", "pose_hypotheses": 3},
    "refine": {
        "steps": 6,
        "images": 32,
        "batch_size": 16,
        "table_rotations": 16,
        "search_rotations": 16,
        "ladder_steps": 2,
        "symmetries": 4,
    },
}


@pytest.mark.parametrize(
    "extra",
    [{}, {"global_steps": 4}, {"rebuild_rounds": 1, "rebuild_steps": 4}],
    ids=["plain", "global_steps", "rebuild_rounds"],  # fresh searches span the resume; rounds
)  # run at the stage's start, before the part run's checkpoints
def test_refinement_stage_resumes_exactly(tmp_path, extra):
    from holly.data.pointio import read_points
    from holly.train import train

    refine = {**TINY_REFINE["refine"], **extra}
    full_cfg = {**TINY_REFINE, "refine": refine}
    full = train(from_dict(full_cfg), tmp_path / "full")  # 12 amortised + 6 refine steps
    part_cfg = {**full_cfg, "train": {**TINY_REFINE["train"], "max_steps": 12}}
    part = train(from_dict({**part_cfg, "refine": {**refine, "steps": 3}}), tmp_path / "p")
    # continue the same folder: 3 more refinement steps (refine.steps may grow on resume)
    train(from_dict(part_cfg), part, resume="yes")
    assert np.array_equal(read_points(full / "points.ply"), read_points(part / "points.ply"))
    poses = np.load(full / "test_poses.npz")
    assert {"rot_amortised", "hypotheses", "shift_refined", "images"} <= set(poses.files)
    assert poses["hypotheses"].shape == (8, 3, 3, 3)
    import csv

    rows = list(csv.DictReader(open(full / "metrics.csv")))
    assert [r["phase"] for r in rows][-1] == "refine"
    assert all(len(r["head_usage"].split()) == 3 for r in rows if r["phase"] == "amortised")


def test_refine_command_on_a_finished_run(tmp_path):
    from holly.cli import main
    from holly.train import train

    cfg = {**TINY_REFINE, "refine": {**TINY_REFINE["refine"], "steps": 0}}
    run = train(from_dict(cfg), tmp_path / "run")
    assert "shift_refined" not in np.load(run / "test_poses.npz").files
    assert main(["refine", str(run), "--steps", "4"]) == 0
    assert "shift_refined" in np.load(run / "test_poses.npz").files
    assert main(["evaluate", str(run)]) == 0
    import json

    poses = json.loads((run / "evaluation.json").read_text())["pose_error_deg"]
    assert poses["refined"] and poses["amortised_median"] is not None
    assert 0 <= poses["wrong_but_fits_fraction"] <= poses["wrong_fraction"] <= 1
    assert main(["refine", str(tmp_path / "nothing")]) == 2


def test_wrong_but_fits_is_judged_by_the_runs_own_loss(tmp_path):
    """`holly evaluate`'s pose fit compares the final and the true pose by the loss the run
    trained with (here L2), read from its config.yaml, not always by L1."""
    import json

    import yaml

    from holly.cli import main
    from holly.train import train

    run = train(from_dict({**TINY_REFINE, "loss": {"kind": "l2"}}), tmp_path / "run")
    assert main(["evaluate", str(run)]) == 0
    l2 = json.loads((run / "evaluation.json").read_text())["pose_error_deg"]
    assert l2["fit_loss_kind"] == "l2"
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["loss"]["kind"] = "l1"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", str(run)]) == 0
    l1 = json.loads((run / "evaluation.json").read_text())["pose_error_deg"]
    assert l1["fit_loss_kind"] == "l1"
    assert l1["fit_loss_true_median"] != pytest.approx(l2["fit_loss_true_median"])
