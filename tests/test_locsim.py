"""holly simulate-localisations: statistics, determinism, refusals, the path through localise."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import holly.cli
from holly.data.imagestore import ImageStore
from holly.data.locsim import (
    CAMERA,
    COLUMNS,
    LocSimParams,
    read_truth,
    simulate_localisations,
    store_poses,
    view_rotations,
    write_simulation,
)
from holly.errors import HollyError


def sim(**kw):
    return simulate_localisations(LocSimParams(**kw))


def camera_of(s):
    """The table's coordinates back in the renderer's camera frame, particle centre removed."""
    return (s.xyz_nm - s.centres_nm[s.particle]) @ CAMERA  # CAMERA is its own inverse


@pytest.mark.parametrize(("blinking", "mean"), [("geometric", 4.0), ("poisson", 3.0)])
def test_blinks_per_fluorophore_match_the_mean(blinking, mean):
    s = sim(particles=300, blinking=blinking, blinks=mean, seed=1)
    n = len(s.n_blinks)
    sd = np.sqrt(mean * (mean - 1)) if blinking == "geometric" else np.sqrt(mean)
    assert abs(s.n_blinks.mean() - mean) < 4 * sd / np.sqrt(n)
    if blinking == "geometric":
        assert s.n_blinks.min() >= 1
    else:
        assert (s.n_blinks == 0).any()  # some labelled sites are never seen
    # the table holds exactly those localisations, each tagged with its fluorophore and site
    counts = np.bincount(s.fluorophore[s.fluorophore >= 0], minlength=n)
    assert np.array_equal(counts, s.n_blinks)
    assert np.array_equal(
        s.site[s.fluorophore >= 0], s.fluor_site[s.fluorophore[s.fluorophore >= 0]]
    )


@pytest.mark.parametrize("labelling", [0.3, 0.5, 1.0])
def test_fraction_of_sites_labelled(labelling):
    s = sim(particles=300, labelling=labelling, seed=2)
    n = s.labelled.size
    assert abs(s.labelled.mean() - labelling) < 4 * np.sqrt(labelling * (1 - labelling) / n) + 1e-12
    # each particle shows its own subset
    if labelling < 1:
        assert len({row.tobytes() for row in s.labelled}) > 250


def test_linker_offsets_have_the_given_length():
    s = sim(particles=20, linker_nm=7.5, seed=3)
    d = np.linalg.norm(s.fluor_nm - s.sites_nm[s.fluor_site], axis=1)
    assert np.allclose(d, 7.5)
    u = (s.fluor_nm - s.sites_nm[s.fluor_site]) / 7.5
    assert np.abs(u.mean(0)).max() < 0.1  # random directions


@pytest.mark.parametrize("tilt", [0.0, 10.0, 30.0, 90.0])
def test_tilt_limited_views_never_exceed_the_limit(tilt):
    rot, theta = view_rotations(4000, "tilt", tilt, np.random.default_rng(0))
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    measured = np.degrees(np.arccos(np.clip(rot[:, 2, 2], -1, 1)))  # view direction R[2] vs z
    assert np.allclose(measured, theta, atol=1e-6)
    assert measured.max() <= tilt + 1e-6
    if tilt > 0:
        assert measured.max() > 0.95 * tilt
        # uniform over the cap: cos(tilt) uniform on [cos T, 1]
        c = np.cos(np.radians(tilt))
        assert rot[:, 2, 2].mean() == pytest.approx(
            (1 + c) / 2, abs=4 * (1 - c) / np.sqrt(12 * 4000)
        )


def test_in_plane_views_have_zero_tilt():
    rot, theta = view_rotations(500, "inplane", 30.0, np.random.default_rng(0))
    assert np.all(theta == 0)
    assert np.allclose(rot[:, 2], [0, 0, 1]) and np.allclose(rot[:, :, 2], [0, 0, 1])
    angles = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    assert np.ptp(angles) > 6.0  # all in-plane angles


def test_a_share_of_particles_lies_face_down():
    """``face_down``: that share of the in-plane particles turned over (the half turn about x
    first, so the viewing axis is -z and the table shows the mirror image); the rest, and a
    simulation without it, draw exactly as before."""
    kw = {"shape": "logo", "particles": 400, "views": "inplane", "seed": 3}
    plain, down = sim(**kw), sim(**kw, face_down=0.25)
    faces = down.rotations[:, 2, 2]
    assert np.allclose(np.abs(faces), 1.0) and 0.19 < (faces < 0).mean() < 0.31
    same = faces > 0
    np.testing.assert_array_equal(down.rotations[same], plain.rotations[same])
    flip = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(down.rotations[~same], plain.rotations[~same] @ flip)
    np.testing.assert_array_equal(sim(**kw, face_down=0.0).xyz_nm, plain.xyz_nm)


def test_uniform_views_are_haar():
    rot, _ = view_rotations(20000, "uniform", 30.0, np.random.default_rng(0))
    assert np.abs(rot.mean(0)).max() < 0.02
    # cos of the tilt uniform on [-1, 1]: its quartiles at -0.5, 0, 0.5
    assert np.quantile(rot[:, 2, 2], [0.25, 0.5, 0.75]) == pytest.approx([-0.5, 0, 0.5], abs=0.03)


def test_precision_spread_matches_sigma_xy_and_sigma_z():
    s = sim(particles=200, sigma_xy_nm=6.0, sigma_z_nm=18.0, seed=4)
    f = s.fluorophore
    ideal = np.einsum("mij,mj->mi", s.rotations[s.particle], s.fluor_nm[f])
    residual = camera_of(s) - ideal
    assert residual.mean(0) == pytest.approx([0, 0, 0], abs=0.5)
    assert residual.std(0) == pytest.approx([6.0, 6.0, 18.0], rel=0.03)
    assert np.all(s.sigma_xy_nm == 6.0) and np.all(s.sigma_z_nm == 18.0)
    iso = sim(particles=5, sigma_xy_nm=4.0, seed=4)
    assert np.all(iso.sigma_z_nm == 4.0)


def test_background_count_and_field():
    s = sim(particles=400, background=12.0, field_nm=200.0, seed=5)
    assert s.n_background.mean() == pytest.approx(12.0, abs=4 * np.sqrt(12 / 400))
    bg = camera_of(s)[s.site < 0]
    assert len(bg) == s.n_background.sum()
    assert np.abs(bg).max() <= 100.0 + 6 * 5.0  # inside the field, plus the noise
    dense = sim(particles=400, background_density=300.0, field_nm=200.0, seed=5)
    assert dense.n_background.mean() == pytest.approx(300 * 0.04, abs=4 * np.sqrt(12 / 400))


def test_structure_sizes():
    logo, pore = sim(particles=1, shape="logo"), sim(particles=1, shape="pore")
    assert np.ptp(logo.sites_nm[:, 0]) == pytest.approx(80.0)
    assert np.ptp(logo.sites_nm[:, 1]) == pytest.approx(75.0)
    assert np.allclose(np.linalg.norm(pore.sites_nm, axis=1), 50.0)
    big = sim(particles=1, shape="tetrapod", size_nm=250.0)
    assert 2 * np.linalg.norm(big.sites_nm, axis=1).max() == pytest.approx(250.0)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    params = {"particles": 30, "labelling": 0.5, "views": "tilt", "background": 3.0}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_simulation(sim(seed=seed, **params), tmp_path / f"{name}.csv")
    a, b, c = ((tmp_path / f"{n}.csv").read_bytes() for n in "abc")
    assert a == b and a != c
    ta, tb = read_truth(tmp_path / "a.csv"), read_truth(tmp_path / "b.csv")
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["seed"] == 7 and record["params"]["labelling"] == 0.5
    assert record["kind"] == "localisation-simulation"


def test_table_columns_and_csv_reader_keeps_z_and_precisions(tmp_path):
    from holly.data.locformats import read_localisations

    s = sim(particles=6, sigma_xy_nm=3.0, sigma_z_nm=9.0, seed=9)
    write_simulation(s, tmp_path / "s.csv")
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == list(COLUMNS)
    parts, _ = read_localisations(tmp_path / "s.csv", particle_column="particle")
    assert parts.source["format"] == "thunderstorm" and parts.nm_per_unit == 1.0
    assert len(parts) == 6 and set(parts.extra) == {"z", "sigma_xy", "sigma_z"}
    assert np.allclose(np.concatenate(parts.extra["sigma_z"]), 9.0)
    mine = s.xyz_nm[s.particle == 2]
    assert np.allclose(parts.xy[2], mine[:, :2], atol=1e-3)
    assert np.allclose(parts.extra["z"][2], mine[:, 2], atol=1e-3)


def run_cli(*argv):
    return holly.cli.main(["simulate-localisations", *map(str, argv)])


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--labelling", "0", "--labelling must be in (0, 1]"),
        ("--labelling", "1.2", "--labelling must be in (0, 1]"),
        ("--sigma-xy-nm", "-1", "--sigma-xy-nm must be non-negative"),
        ("--sigma-z-nm", "-2", "--sigma-z-nm must be non-negative"),
        ("--max-tilt", "95", "--max-tilt must be in [0, 90]"),
        ("--max-tilt", "-5", "--max-tilt must be in [0, 90]"),
        ("--blinks", "0.5", "--blinks must be >= 1"),
        ("--particles", "0", "--particles must be a positive integer"),
        ("--linker-nm", "nan", "--linker-nm must be a finite number"),
        ("--face-down", "1.5", "--face-down must be in [0, 1]"),
        ("--face-down", "0.1", "--face-down must be 0 with --views uniform"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, option, value, words):
    assert run_cli("--out", tmp_path / "s.csv", option, value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert list(tmp_path.iterdir()) == []


def test_help_and_outputs_guarded(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("--help")
    assert exc.value.code == 0 and "--labelling" in capsys.readouterr().out
    out = tmp_path / "s.csv"
    assert run_cli("--out", out, "--particles", 3) == 0
    assert run_cli("--out", out, "--particles", 3) == 2  # exists: --force needed
    assert "--force" in capsys.readouterr().err
    assert run_cli("--out", out, "--particles", 4, "--force") == 0
    assert json.loads(out.with_suffix(".json").read_text())["params"]["particles"] == 4
    user = tmp_path / "mine.csv"
    user.write_text("x [nm],y [nm]\n1,2\n")
    assert run_cli("--out", user, "--force") == 2  # not holly's: never replaced
    assert user.read_text() == "x [nm],y [nm]\n1,2\n"
    assert run_cli("--out", tmp_path / "s.txt") == 2
    with pytest.raises(HollyError, match="--views"):
        LocSimParams(views="sideways").check()


def test_end_to_end_through_localise(tmp_path):
    out = tmp_path / "sim.csv"
    args = ["--particles", 12, "--labelling", 0.6, "--background", 4, "--sigma-z-nm", 12]
    assert run_cli("--out", out, "--views", "tilt", "--max-tilt", 20, "--seed", 3, *args) == 0
    store_path = tmp_path / "sim.zarr"
    rc = holly.cli.main(
        ["localise", str(out), "--particle-column", "particle", "--out", str(store_path)]
        + ["--sigmas", "3,1.5", "--size", "32", "--perturbations", "2"]
    )
    assert rc == 0
    store = ImageStore.open(store_path)
    assert store.n_images == 24 and len(np.unique(store.particle_ids)) == 12
    table = pd.read_csv(out)
    assert len(store.array("localisation_particle")) == len(table)
    assert np.allclose(store.array("localisation_z"), table["z [nm]"])
    assert store.nm_per_px is not None
    sums = store.load_level(1.5).sum(axis=(1, 2))
    assert np.allclose(sums, np.repeat(table.groupby("particle").size().to_numpy(), 2), rtol=0.02)


def test_true_poses_are_in_the_renderer_convention(tmp_path):
    """localise's image of particle p == render(R_z(phi) R_p sites), bbox-centred and scaled."""
    from holly.data.localisations import localise
    from holly.method.render import render

    s = sim(particles=3, shape="logo", sigma_xy_nm=0.0, blinks=1.0, views="uniform", seed=11)
    write_simulation(s, tmp_path / "s.csv")
    size, sigma = 48, 1.0
    result = localise(
        tmp_path / "s.csv",
        tmp_path / "s.zarr",
        [sigma],
        particle_column="particle",
        size=size,
        perturbations=1,
        seed=2,
    )
    store = ImageStore.open(tmp_path / "s.zarr")
    images, phi = store.load_level(sigma), store.array("rotation_angle")
    k = result.pixels_per_unit / (size / 4)  # model units per nm
    poses = store_poses(tmp_path / "s.zarr", tmp_path / "s.csv")
    for p in range(3):
        cam = s.rotations[p] @ s.sites_nm.T  # [3, S], every site labelled, one blink each
        centre = (cam[:2].min(1) + cam[:2].max(1)) / 2
        pts = (s.sites_nm - np.r_[np.linalg.solve(s.rotations[p], np.r_[centre, 0])]) * k
        c, sn = np.cos(phi[p]), np.sin(phi[p])
        assert np.allclose(poses[p], [[c, -sn, 0], [sn, c, 0], [0, 0, 1]] @ s.rotations[p])
        expected = render(
            torch.tensor(pts, dtype=torch.float32),
            torch.tensor(poses[p], dtype=torch.float32)[None],
            torch.zeros(1, 2),
            sigma,
            size,
            size,
        )[0].numpy()
        assert np.abs(images[p] - expected).max() < 1e-3 * expected.max()


def test_store_poses_follow_particle_labels(tmp_path):
    """A particle without localisations is absent from the table: the store's read-order
    numbers skip it, and store_poses maps them back through the labels."""
    s = sim(particles=40, labelling=0.05, blinking="poisson", blinks=1.0, seed=12)
    write_simulation(s, tmp_path / "s.csv")
    present = np.unique(s.particle)
    assert len(present) < 40  # some particles are empty
    localise_args = ["--particle-column", "particle", "--sigmas", "2", "--size", "16"]
    rc = holly.cli.main(
        ["localise", str(tmp_path / "s.csv"), "--out", str(tmp_path / "s.zarr"), *localise_args]
        + ["--perturbations", "1", "--min-localisations", "1", "--outlier-factor", "0"]
    )
    assert rc == 0
    poses = store_poses(tmp_path / "s.zarr", tmp_path / "s.csv")
    store = ImageStore.open(tmp_path / "s.zarr")
    labels = np.asarray(store.attrs["source"]["particle_labels"])[store.particle_ids]
    view = poses[:, 2]  # the in-plane copy keeps the viewing direction
    assert np.allclose(view, s.rotations[labels][:, 2])
