"""Template-free 2D particle fusion (holly/method/fusion.py) and `holly fuse`.

Each piece against an analytic case: a pair registered back to the rotation and shift that
made it, angles synchronised despite half the pairs being wrong, shifts solved exactly from
consistent pairs; then whole fusions of fully labelled particles (every particle turned back
into one frame) and of structureless ones (the pairs do not agree), and the command.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import holly.cli
from holly.data.fusionrecord import fused_from_record
from holly.data.localisations import read_store_localisations
from holly.data.shapes import logo_sites_nm
from holly.method.annealedfusion import MIRROR
from holly.method.fusion import (
    Fusion,
    FusionParams,
    Grid,
    Pairs,
    best_alignment,
    density,
    disagreement_deg,
    fuse,
    majority_face_up,
    rotated_spectra,
    rotation,
    synchronise_angles,
    synchronise_shifts,
)
from holly.results.structure import ring


def blinks(sites: np.ndarray, rng, per_site=4, precision=1.0) -> np.ndarray:
    """Localisations: ``per_site`` of each site, scattered by ``precision``."""
    locs = np.repeat(sites, per_site, axis=0)
    return locs + rng.normal(scale=precision, size=locs.shape)


def logo_particles(n, rng, labelling=1.0):
    """``n`` logos, each turned by a random angle and moved: (localisations, angles)."""
    sites = logo_sites_nm()[:, :2]
    parts, angles = [], rng.uniform(0, 2 * np.pi, n)
    for a in angles:
        shown = sites[rng.random(len(sites)) < labelling]
        parts.append(blinks(shown, rng) @ rotation(a).T + rng.normal(scale=5.0, size=2))
    return parts, angles


def common_rotation_spread_deg(found: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Each particle's found angle plus its true one should be one constant: the distance of
    each from their circular mean, degrees."""
    z = np.exp(1j * (found + true))
    return np.degrees(np.abs(np.angle(z * np.exp(-1j * np.angle(z.mean())))))


def test_a_pair_registers_to_the_rotation_and_shift_that_made_it():
    rng = np.random.default_rng(0)
    a = blinks(logo_sites_nm()[:, :2], rng)
    a -= a.mean(0)
    b = a @ rotation(np.radians(50)).T + np.array([6.0, -4.0])
    grid = Grid(n=96, pixel=2.0)
    angles = np.radians(np.arange(0, 360, 5.0))
    spectra = rotated_spectra(a, grid, 3.0, angles)
    import torch

    target = torch.fft.rfft2(torch.from_numpy(density(b, grid, 3.0)).float())[None]
    score, k, shift = best_alignment(spectra, target, grid)
    assert np.degrees(angles[k[0]]) == pytest.approx(50.0)
    assert np.abs(shift[0] - [6.0, -4.0]).max() <= grid.pixel / 2 + 1e-9
    assert score[0] > 0


def test_angles_are_synchronised_although_half_the_pairs_are_wrong():
    rng = np.random.default_rng(1)
    n = 80
    phi = rng.uniform(-np.pi, np.pi, n)
    i, j = np.triu_indices(n, 1)
    right = rng.random(len(i)) < 0.5
    theta = np.where(right, phi[i] - phi[j] + rng.normal(scale=0.02, size=len(i)), 0.0)
    theta = np.where(right, theta, rng.uniform(-np.pi, np.pi, len(i)))
    pairs = Pairs(i, j, theta, np.zeros((len(i), 2)), np.ones(len(i)))
    found = synchronise_angles(n, pairs, np.ones(len(i), bool))
    # up to one common rotation: found_i - phi_i is a constant; the outliers still pull it
    assert common_rotation_spread_deg(found, -phi).max() < 20.0
    for keep_deg in (30.0, 10.0):  # as fuse() does: drop the pairs that disagree, solve again
        keep = disagreement_deg(pairs, found) < keep_deg
        found = synchronise_angles(n, pairs, keep)
    assert keep[right].mean() > 0.99 and keep[~right].mean() < 0.1
    assert common_rotation_spread_deg(found, -phi).max() < 1.0


def test_shifts_are_exact_from_consistent_pairs():
    rng = np.random.default_rng(2)
    n = 12
    phi, b = rng.uniform(-np.pi, np.pi, n), rng.normal(scale=10.0, size=(n, 2))
    i, j = np.nonzero(rng.random((n, n)) < 0.5)
    i, j = i[i != j], j[i != j]
    # x -> R(phi_i) x + b_i equals (x -> R(phi_j) x + b_j) after the pair's map into j
    shift = np.stack([rotation(-phi[q]) @ (b[p] - b[q]) for p, q in zip(i, j, strict=True)])
    pairs = Pairs(i, j, phi[i] - phi[j], shift, np.ones(len(i)))
    found = synchronise_shifts(n, pairs, phi, np.ones(len(i), bool))
    assert np.allclose(found, b - b.mean(0), atol=1e-6)


def test_fully_labelled_particles_are_fused_into_one_frame():
    rng = np.random.default_rng(3)
    parts, angles = logo_particles(16, rng)
    params = FusionParams(sigma=3.0, n_angles=72, partners=8, bootstrap_rounds=1, method="pairs")
    result = fuse(parts, params, seed=0)
    assert result.pair_agreement > 0.8
    assert common_rotation_spread_deg(result.angles, angles).max() < 6.0
    # the fused particles lie on each other: the logo's sites, turned once, within ~2 nm
    fused = result.apply(parts)
    turn = result.angles[0] + angles[0]
    sites = logo_sites_nm()[:, :2] @ rotation(turn).T
    centre = np.concatenate(fused).mean(0) - sites.mean(0)
    for p in fused:
        d = np.linalg.norm(p[:, None] - (sites + centre)[None], axis=2).min(1)
        assert np.median(d) < 2.5


def test_structureless_particles_do_not_agree():
    """The pairs' agreement is the fusion's own warning: particles with nothing in common
    (uniform noise) register anyhow, but their pairs do not agree with one set of angles."""
    rng = np.random.default_rng(4)
    noise = [rng.uniform(-30, 30, size=(40, 2)) for _ in range(24)]
    params = FusionParams(sigma=3.0, partners=8, bootstrap_rounds=0, method="pairs")
    result = fuse(noise, params, seed=0)
    logos, _ = logo_particles(24, rng)
    logo = fuse(logos, params, seed=0)
    assert result.pair_agreement < 0.5 < 0.8 < logo.pair_agreement


def test_too_few_particles_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        fuse([np.zeros((4, 2))] * 2, FusionParams(sigma=1.0), seed=0)


# ------------------------------------------------------------------ the command


def placement_spread_deg(found, found_down, true, true_down) -> float:
    """Particle ``i`` was made as ``R(true_i) M^true_down_i`` of one structure and placed by
    ``R(found_i) M^found_down_i``: a right fusion composes the two into one transform for all
    (up to turning the whole over). The largest angle of a composition from the first one's,
    degrees; 180 where some are turned over against the others."""
    composed = [
        rotation(f) @ np.diag(MIRROR if fd else [1.0, 1.0]) @ rotation(t)
        @ np.diag(MIRROR if td else [1.0, 1.0])
        for f, fd, t, td in zip(found, found_down, true, true_down, strict=True)
    ]  # fmt: skip
    if len({round(np.linalg.det(c)) for c in composed}) > 1:
        return 180.0
    rel = [c @ composed[0].T for c in composed]
    return float(np.degrees(np.abs([np.arctan2(r[1, 0], r[0, 0]) for r in rel])).max())


def test_a_fusion_mostly_face_down_is_turned_over_as_a_whole():
    """More than half placed mirrored: the whole fused frame is mirrored instead, so that
    most particles lie face up; every placement is the old one's mirror image, exactly."""
    rng = np.random.default_rng(0)
    parts = [rng.normal(0, 3, (6, 2)) for _ in range(5)]
    centroids = np.array([p.mean(0) for p in parts])
    down = np.array([True, True, True, False, True])
    fusion = Fusion(
        *(rng.uniform(0, 6, 5), rng.normal(0, 2, (5, 2)), centroids, None, 0, 0),
        mirrored=down.copy(),
        sites=rng.normal(0, 1, (3, 2)),
    )
    before, sites = fusion.apply(parts), fusion.sites.copy()
    turned = majority_face_up(fusion)
    np.testing.assert_array_equal(turned.mirrored, ~down)
    for now, then in zip(turned.apply(parts), before, strict=True):
        np.testing.assert_allclose(now, then * MIRROR, atol=1e-12)
    np.testing.assert_allclose(turned.sites, sites * MIRROR)
    assert majority_face_up(turned).mirrored.sum() == 1  # already mostly face up: kept


def _localised(tmp_path, particles=12):
    table = tmp_path / "sim.csv"
    sim = ["--out", str(table), "--shape", "logo", "--particles", str(particles)]
    sim += ["--views", "inplane", "--sigma-xy-nm", "2", "--seed", "5"]
    assert holly.cli.main(["simulate-localisations", *sim]) == 0
    store = tmp_path / "sim.zarr"
    localise = ["localise", str(table), "--particle-column", "particle", "--out", str(store)]
    localise += ["--sigmas", "2", "--size", "32", "--perturbations", "1"]
    assert holly.cli.main(localise) == 0
    return store


def test_fuse_command_writes_its_record_and_figure(tmp_path):
    store = _localised(tmp_path)
    out, fig = tmp_path / "fusion.json", tmp_path / "fused.png"
    argv = ["fuse", str(store), "--out", str(out), "--figure", str(fig)]
    assert holly.cli.main([*argv, "--partners", "6", "--bootstrap", "1"]) == 0
    record = json.loads(out.read_text())
    assert record["holly_fusion"] == 1 and record["unit"] == "nm"
    assert record["particles"] == 12 and len(record["transforms"]) == 12
    # every particle turned into one frame: its angle and its true in-plane rotation sum to
    # one constant (the table's y points down, so the rotation's sign flips)
    truth = np.load(tmp_path / "sim.truth.npz")["rotations"]
    ids = [t["particle"] for t in record["transforms"]]
    true = -np.arctan2(truth[ids, 1, 0], truth[ids, 0, 0])
    found = np.radians([t["angle_deg"] for t in record["transforms"]])
    # none lies face down, and the fused frame shows the face most particles show
    down = [t["mirrored"] for t in record["transforms"]]
    kept_faces = 0 if record["chosen"] == "anneal" else None  # pairs: turns only
    assert record["params"]["mirror"] and record["mirrored"] == kept_faces
    assert placement_spread_deg(found, down, true, np.zeros(12, bool)) < 6.0
    # the fused logo is as large as one particle (it is not smeared into a disc)
    assert record["fused_extents"][0] == pytest.approx(record["particle_extents"][0], rel=0.15)
    assert {"versions", "git", "seed"} <= set(record["provenance"])
    sources = record["provenance"]["inputs"]["source_files"]
    assert [len(f["sha256"]) for f in sources] == [64]  # the table the store was made from
    assert fig.stat().st_size > 0


def test_a_site_template_record_says_the_annealing_ran(tmp_path):
    # sites: the annealing alone, even with the default --method both; the record says so
    store, out = _localised(tmp_path), tmp_path / "fusion.json"
    argv = ["fuse", str(store), "--out", str(out), "--sites", "6", "--rounds", "3", "--starts", "1"]
    assert holly.cli.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["method"] == record["params"]["method"] == record["chosen"] == "anneal"
    assert len(record["sites"]) == 6


def test_no_mirror_fuses_by_turns_only(tmp_path):
    store, out = _localised(tmp_path, particles=6), tmp_path / "fusion.json"
    argv = ["fuse", str(store), "--out", str(out), "--method", "anneal", "--no-mirror"]
    assert holly.cli.main([*argv, "--rounds", "3", "--starts", "1"]) == 0
    record = json.loads(out.read_text())
    assert record["params"]["mirror"] is False and record["mirrored"] is None
    assert not any(t["mirrored"] for t in record["transforms"])


def test_fuse_refuses_a_store_without_localisations_and_its_own_input(tmp_path, capsys):
    sim = {"seed": 1, "data": {"shape": "tetrapod", "particles": 6, "augment": 1}}
    sim |= {"render": {"height": 16, "width": 16}, "sigma": {"values": [2.0]}}
    images = tmp_path / "images.zarr"
    assert holly.cli.main(["simulate", "--config-json", json.dumps(sim), "--out", str(images)]) == 0
    capsys.readouterr()
    assert holly.cli.main(["fuse", str(images), "--out", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert "no localisation table" in err and "holly localise" in err
    assert not (tmp_path / "f.json").exists()
    store = _localised(tmp_path)
    capsys.readouterr()
    assert holly.cli.main(["fuse", str(store), "--out", str(store / "zarr.json")]) == 2
    assert "error:" in capsys.readouterr().err
    assert (
        holly.cli.main(["fuse", str(store), "--out", str(tmp_path / "f.json"), "--angles", "2"])
        == 2
    )
    assert "--angles must be at least 8" in capsys.readouterr().err
    for bad, words in (
        (["--symmetry", "7"], "--symmetry must be a whole number dividing the 72 rotations"),
        (["--symmetry", "8", "--sites", "12"], "--sites must be 0 (a free density) or a"),
        (["--sites", "8", "--method", "pairs"], "--sites is a template of the annealed fusion"),
    ):
        argv = ["fuse", str(store), "--out", str(tmp_path / "f.json"), *bad]
        assert holly.cli.main(argv) == 2
        assert words in capsys.readouterr().err
    assert (
        holly.cli.main(["fuse", str(store), "--out", str(tmp_path / "f.json"), "--sigma", "nan"])
        == 2
    )
    assert "--sigma must be a positive length" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()


@pytest.mark.slow
def test_the_shared_nup107_pores_fuse_into_an_eightfold_ring(tmp_path):
    """The authors' 100 simulated Nup107 pores (smlm_datafusion3d, mostly top views), fused
    with the defaults in the xy plane: a ring of the model's radius (~48 nm), order 8 the
    strongest of its angular orders (the README's fusion table)."""
    source = Path(holly.__file__).parents[1].parent / "shared/realdata/particles"
    source = source / "npc_nup107_simulated" / "data.mat"
    if not source.exists():
        pytest.skip(f"{source} absent (the shared real data are not in the repository)")
    store = tmp_path / "npc.zarr"
    localise = ["localise", str(source), "--format", "tud-mat", "--pixel-size", "130"]
    localise += ["--out", str(store), "--sigmas", "2", "--size", "32", "--perturbations", "1"]
    assert holly.cli.main(localise) == 0
    out = tmp_path / "fusion.json"
    assert holly.cli.main(["fuse", str(store), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    fused = np.concatenate(fused_from_record(read_store_localisations(store), record))
    result = ring(np.c_[fused, np.zeros(len(fused))])
    assert result["dominant_order"] == 8
    assert 45 < result["radius"] < 51  # nm
