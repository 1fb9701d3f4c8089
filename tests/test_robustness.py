"""The robustness sweep (issue 25): its grid and seeds, resumable cell records, the scoring of a
run against its localisation simulation (`holly evaluate --locsim-truth`), and one tiny cell
through the real command chain (tools/robustness.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import holly.cli
from holly.config import from_dict
from holly.data.imagestore import ImageStore
from holly.data.locsim import read_truth, store_poses
from holly.data.pointio import write_points
from holly.errors import HollyError
from holly.results import robustness as rb
from holly.results.locsimtruth import held_out_images
from holly.run.runfolder import RunFolder

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the grid and its seeds


def test_grid_is_one_factor_at_a_time_around_the_base():
    cells = rb.grid()
    assert len(cells) == 7 * 4 and len({c.name for c in cells}) == len(cells)
    assert {c.shape for c in cells} == {"cep152", "tetrapod", "helix", "logo"}
    for shape in rb.SHAPES:
        mine = {c.condition: c for c in cells if c.shape == shape}
        base = mine["base"]
        assert (base.labelling, base.precision, base.views) == (0.3, 0.1, "uniform")
        moved = {
            name: [
                f for f in ("labelling", "precision", "views") if getattr(c, f) != getattr(base, f)
            ]
            for name, c in mine.items()
        }
        assert moved == {
            "base": [],
            "label100": ["labelling"],
            "label50": ["labelling"],
            "prec5": ["precision"],
            "prec20": ["precision"],
            "tilt30": ["views"],
            "inplane": ["views"],
        }
    assert {c.labelling for c in cells} == {1.0, 0.5, 0.3}
    assert {c.precision for c in cells} == {0.05, 0.1, 0.2}
    assert {c.views for c in cells} == {"uniform", "tilt", "inplane"}


def test_prior_variants_and_selection():
    cells = rb.grid(["logo"], with_prior=True)
    priors = [c for c in cells if c.prior]
    assert [c.name for c in priors] == ["logo-tilt30-prior", "logo-inplane-prior"]
    assert rb.select(cells, ["base", "logo-inplane-prior"]) == [cells[0], priors[1]]
    with pytest.raises(HollyError, match="not a cell"):
        rb.select(cells, ["sideways"])
    with pytest.raises(HollyError):
        rb.grid(["no-such-shape"])
    cfg = rb.train_config(priors[0], rb.SCALES["tiny"], 1, Path("s.zarr"), None)
    assert cfg["model"]["pose_prior"] == "tilt" and cfg["model"]["max_tilt_deg"] == 30
    assert rb.train_config(priors[1], rb.SCALES["tiny"], 1, Path("s"), 2)["validation"] == {
        "half": 2
    }


def test_cell_seeds_are_pinned_distinct_and_shared_with_the_prior_variant():
    cells = rb.grid(with_prior=True)
    seeds = {c.name: rb.cell_seed(0, c) for c in cells}
    plain = [seeds[c.name] for c in cells if not c.prior]
    assert len(set(plain)) == len(plain)  # every data set its own
    assert seeds["logo-tilt30-prior"] == seeds["logo-tilt30"]
    assert rb.cell_seed(1, cells[0]) != rb.cell_seed(0, cells[0])
    # a pure function of (seed, name): the same number on every platform and run
    assert rb.cell_seed(0, cells[0]) == PINNED_SEED


PINNED_SEED = 2138383316  # cell_seed(0, cep152-base): SeedSequence([0, crc32(name)])


def test_commands_are_the_holly_chain_with_the_cells_parameters(tmp_path):
    cell = rb.select(rb.grid(["logo"]), ["prec20"])[0]
    steps = dict(rb.commands(cell, rb.SCALES["small"], 7, tmp_path))
    assert list(steps) == [
        "simulate",
        "localise",
        "train",
        "train_half1",
        "train_half2",
        "compare",
        "evaluate",
    ]
    sim = steps["simulate"]
    sigma = float(sim[sim.index("--sigma-xy-nm") + 1])
    assert sigma == pytest.approx(0.2 * rb.size_nm("logo"), rel=1e-4)
    assert sim[sim.index("--sigma-z-nm") + 1] == sim[sim.index("--sigma-xy-nm") + 1]
    assert sim[sim.index("--labelling") + 1] == "0.3" and "--seed" in sim
    cfg = json.loads(steps["train"][steps["train"].index("--config-json") + 1])
    from_dict(cfg)  # a valid experiment config
    assert cfg["train"]["threads"] == 1 and cfg["data"]["source"] == "zarr"
    assert steps["evaluate"][-2:] == ["--locsim-truth", str(tmp_path / "sim.csv")]


def test_default_scale_trains_as_the_default_workflow():
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["defaults"]
    scale = rb.SCALES["default"].train
    for section in ("model", "loss", "sigma", "refine"):
        assert scale[section] == defaults[section], section
    train = {k: v for k, v in defaults["train"].items() if k != "epochs"}
    assert {k: scale["train"][k] for k in train} == train
    assert scale["train"]["steps"] == 2000  # 2 epochs of 32,000 images, batch 32


# ---------------------------------------------------------------- resumable records


def fake_runner(calls, fail_on=None):
    def run(argv, log_path):
        calls.append(argv[0])
        if argv[0] == fail_on:
            raise HollyError(f"holly {argv[0]} exited 2: boom ({log_path})")

    return run


def test_finished_cells_are_skipped_and_failed_ones_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(rb, "cell_scores", lambda work, half_sets: {"chamfer_ratio_to_blob": 0.4})
    cells = rb.select(rb.grid(["tetrapod"]), ["base", "prec5"])
    calls = []
    records = rb.run_cells(cells[:1], tmp_path, "tiny", 0, fake_runner(calls))
    assert records[0]["status"] == "done" and calls == [
        "simulate-localisations",
        "localise",
        "train",
        "evaluate",
    ]
    assert set(records[0]["timings_s"]) == {"simulate", "localise", "train", "evaluate"}
    assert records[0]["seed"] == rb.cell_seed(0, cells[0])
    calls.clear()
    records = rb.run_cells(cells, tmp_path, "tiny", 0, fake_runner(calls, fail_on="train"))
    assert calls == [
        "simulate-localisations",
        "localise",
        "train",
    ]  # base skipped, prec5 failed in train
    assert [r["status"] for r in records] == ["done", "failed"]
    assert "boom" in records[1]["error"]
    assert json.loads((tmp_path / "cells" / "tetrapod-prec5.json").read_text())["status"] == (
        "failed"
    )
    calls.clear()
    rb.run_cells(cells, tmp_path, "tiny", 0, fake_runner(calls))  # a failed cell is retried
    assert calls == ["simulate-localisations", "localise", "train", "evaluate"]
    csv_path, md_path = rb.write_tables(tmp_path, rb.records_or_placeholders(tmp_path, cells))
    assert csv_path.is_file() and "| tetrapod | prec5 | 0.40 |" in md_path.read_text()


def test_table_shows_failed_and_missing_cells():
    cells = rb.grid(["logo"])[:2]
    failed = rb.placeholder(cells[0]) | {"status": "failed", "error": "HollyError: x | y\nmore"}
    text = rb.markdown([failed, rb.placeholder(cells[1])])
    assert "failed: HollyError: x / y |" in text and "failed: not run" in text


# ---------------------------------------------------------------- scoring against a simulation


def _simulated_store(tmp_path, views="uniform"):
    sim, store = tmp_path / "sim.csv", tmp_path / "sim.zarr"
    args = ["simulate-localisations", "--out", str(sim), "--shape", "tetrapod"]
    assert holly.cli.main(args + ["--particles", "12", "--views", views, "--seed", "4"]) == 0
    args = ["localise", str(sim), "--particle-column", "particle", "--out", str(store)]
    assert holly.cli.main(args + ["--sigmas", "3", "--size", "32", "--perturbations", "2"]) == 0
    return sim, store


def _fake_run(tmp_path, sim, store, rotate):
    """A run folder whose cloud is the sites (rotated by ``rotate``) and whose poses are the
    held-out images' true poses (in that rotated frame): a perfect reconstruction."""
    cfg = from_dict(
        {
            "seed": 3,
            "data": {"source": "zarr", "store": str(store), "test_fraction": 0.25},
            "render": {"height": 32, "width": 32},
            "train": {"test_images": 5},
        }
    ).to_dict()
    rf = RunFolder(tmp_path / "run")
    rf.root.mkdir()
    rf.write_config(cfg)
    s = ImageStore.open(store)
    scale = {"nm_per_px": s.nm_per_px, "nm_per_model_unit": s.nm_per_model_unit}
    rf.write_provenance({"scale": scale})
    sites = read_truth(sim)["sites_nm"] / s.nm_per_model_unit
    write_points(rf.points, sites @ rotate.T + 0.3)
    rot_true = store_poses(store, sim)[held_out_images(cfg, s)]
    # cloud Q X: the poses M^h R Q^T (det +1; M flips the depth, unseen) give the same images
    depth_flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(rotate))])
    rf.write_test_poses(rot_pred=depth_flip @ rot_true @ rotate.T)
    return rf, len(rot_true)


def test_locsim_truth_scores_a_perfect_run_as_perfect(tmp_path):
    sim, store = _simulated_store(tmp_path, views="tilt")
    c, s = np.cos(0.7), np.sin(0.7)
    rotate = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([1.0, 1.0, -1.0])  # mirrored
    rf, n_test = _fake_run(tmp_path, sim, store, rotate)
    assert n_test == 5
    assert holly.cli.main(["evaluate", str(rf.root), "--locsim-truth", str(sim)]) == 0
    ev = rf.read_evaluation()
    assert ev["reconstruction"]["chamfer"] < 1e-6 and ev["chamfer_ratio_to_blob"] < 1e-5
    assert ev["pose_error_deg"]["median"] < 1e-3 and ev["pose_error_deg"]["n_images"] == 5
    block = ev["locsim_truth"]
    assert block["shape"] == "tetrapod" and block["held_out_images"] == 5
    assert block["size_model_units"] == pytest.approx(100 / block["nm_per_model_unit"])
    assert 0 < block["simulated_tilt_deg"]["p90"] <= 30  # --views tilt, --max-tilt 30
    assert ev["ground_truth"].endswith("sim.sites.ply") and ev["views"]["true"]


def test_locsim_truth_refusals(tmp_path, capsys):
    sim, store = _simulated_store(tmp_path)
    rf, _ = _fake_run(tmp_path, sim, store, np.eye(3))
    both = ["evaluate", str(rf.root), "--locsim-truth", str(sim), "--ground-truth", str(sim)]
    assert holly.cli.main(both) == 2
    assert "leave out --ground-truth" in capsys.readouterr().err
    assert not rf.evaluation.exists()
    snapshots = ["evaluate", str(rf.root), "--locsim-truth", str(sim), "--snapshots"]
    assert holly.cli.main(snapshots) == 2
    assert "leave out --snapshots" in capsys.readouterr().err
    cfg = rf.read_config() | {"data": rf.read_config()["data"] | {"source": "simulated"}}
    rf.write_config(cfg)
    assert holly.cli.main(["evaluate", str(rf.root), "--locsim-truth", str(sim)]) == 2
    assert "not a run on an image store" in capsys.readouterr().err


def _sharp_helix_cell(folder, particles: int) -> None:
    """A simulated helix cell in ``folder`` (sim.csv, store.zarr) whose images fix their poses:
    every site labelled, 2 nm precision, 32 px, two copies a particle."""
    sim, store = folder / "sim.csv", folder / "store.zarr"
    args = ["simulate-localisations", "--out", str(sim), "--shape", "helix", "--seed", "4"]
    sharp = ["--particles", str(particles), "--sigma-xy-nm", "2", "--sigma-z-nm", "2"]
    assert holly.cli.main(args + sharp) == 0
    args = ["localise", str(sim), "--particle-column", "particle", "--out", str(store)]
    assert holly.cli.main(args + ["--sigmas", "1", "--size", "32", "--perturbations", "2"]) == 0


def test_pose_identifiability_tool_finds_the_true_poses_of_sharp_full_images(tmp_path):
    """tools/pose_identifiability.py: with every site labelled at a small precision the images
    determine their poses, so its search against the true sites must land on them (4 deg
    here; with the store's rotations transposed, a wrong convention, 110 deg). The helix:
    the tetrapod's near-symmetric twins fit as well as its true poses, and a search may land on
    either."""
    _sharp_helix_cell(tmp_path, 10)
    tool = REPO / "tools" / "pose_identifiability.py"
    done = subprocess.run(
        [sys.executable, str(tool), str(tmp_path), "--rotations", "1024", "--images", "20"]
        + ["--fit-steps", "20"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    median = float(done.stdout.split("best-fitting pose ")[1].split(" deg")[0])
    assert median < 10, done.stdout
    fits = [float(done.stdout.split(f"at the {k} poses: ")[1][:4]) for k in ("found", "true")]
    # poses within a few degrees of the truth fit (nearly) the same cloud
    assert all(0 < f < 2 for f in fits) and abs(fits[0] - fits[1]) < 0.1, done.stdout
    assert "searched 20 of 20 images" in done.stderr
    missing = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_truth_start_tool_writes_the_sites_in_model_units_with_a_share_mirrored(tmp_path):
    """tools/truth_start.py: the cell's true sites in the store's model units (what
    `refine.start_points` reads), a seeded share of them mirrored, and noise on request."""
    from scipy.spatial import cKDTree

    from holly.data.imagestore import ImageStore
    from holly.data.locsim import read_truth
    from holly.data.pointio import read_points

    sim, store = _simulated_store(tmp_path)
    cell = tmp_path / "cell"
    cell.mkdir()
    for path in tmp_path.glob("sim*"):  # the tool wants sim.csv and store.zarr in one folder
        path.rename(cell / ("store.zarr" if path.suffix == ".zarr" else path.name))
    sites = (
        read_truth(cell / "sim.csv")["sites_nm"]
        / ImageStore.open(cell / "store.zarr").nm_per_model_unit
    )
    sites = sites - sites.mean(0)
    tool = [sys.executable, str(REPO / "tools" / "truth_start.py"), str(cell)]

    def start(name, *args):
        out = tmp_path / name
        done = subprocess.run(tool + ["--out", str(out), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return read_points(out), done.stdout

    exact, said = start("exact.ply", "--points", "30")
    assert exact.shape == (30, 3) and cKDTree(sites).query(exact)[0].max() < 1e-5
    assert "Chamfer / blob" in said
    mirrored, _ = start("mirrored.ply", "--points", "30", "--mirrored-share", "0.5")
    on_sites = cKDTree(sites).query(mirrored)[0] < 1e-5
    on_mirror = cKDTree(sites * [1, 1, -1]).query(mirrored)[0] < 1e-5
    assert (on_sites | on_mirror).all() and 15 <= on_mirror.sum() and 15 <= on_sites.sum()
    noisy, _ = start("noisy.ply", "--points", "30", "--noise", "0.1")
    assert 0.03 < np.median(cKDTree(sites).query(noisy)[0]) < 0.3
    missing = subprocess.run(
        tool[:2] + [str(tmp_path / "nowhere"), "--out", "x.ply"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def _round_from_the_truth(folder, script: str, particles: int, options: list[str]):
    """A sharp helix cell in ``folder`` and ``tools/<script>`` run on it from the true sites:
    the tool's command line (without --start) and its finished process, checked to exit 0."""
    _sharp_helix_cell(folder, particles)
    tool = [sys.executable, str(REPO / "tools" / script), str(folder)]
    done = subprocess.run(
        tool + ["--start", "truth"] + options, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return tool, done


def test_hand_em_tool_keeps_the_true_hand_of_sharp_full_images(tmp_path):
    """tools/hand_em.py: a round of search and refit from the true sites, on images that
    determine their poses (every site labelled, 2 nm), must rebuild the helix in its own hand:
    nearer the sites than their mirror image, and well inside the blob (a start from the blob
    scores 0.74 after the same round, its hands even). A bad --start exits 2
    and names it."""
    small = ["--images", "24", "--rotations", "512", "--fit-steps", "300", "--rounds", "1"]
    tool, done = _round_from_the_truth(tmp_path, "hand_em.py", 12, small)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("round 1: 150 points at level 1 px"), done.stdout
    ratio = float(last.split("Chamfer / blob ")[1].split(",")[0])
    proper, mirrored = (float(v) for v in last.split("hands ")[1].split(" (")[0].split(" / "))
    assert ratio < 0.5 and proper < 0.5 * mirrored, done.stdout  # 0.19; 0.06 / 0.23 here
    for bad in ("mirrored:2", str(tmp_path / "nowhere.ply")):
        refused = subprocess.run(tool + ["--start", bad], capture_output=True, text=True)
        assert refused.returncode == 2 and bad in refused.stderr, refused.stderr
    warm = ["--start", "truth", "--refit", "warm", "--points", "20", "--rounds", "1"]
    refused = subprocess.run(tool + warm, capture_output=True, text=True)
    assert refused.returncode == 2 and "--refit warm" in refused.stderr, refused.stderr


def _depth_em_module():
    """tools/depth_em.py imported (its folder first on the path, as when it runs)."""
    import importlib

    sys.path.insert(0, str(REPO / "tools"))
    try:
        return importlib.import_module("depth_em")
    finally:
        sys.path.remove(str(REPO / "tools"))


def test_depth_em_tells_a_chiral_cloud_from_its_mirror_image_by_the_z_of_localisations(tmp_path):
    """tools/depth_em.py: the mirror image of the sites at the twin pose F R F draws the same
    intensity as the sites at R (so the intensity's deviance cannot choose between them), but
    every depth negated; the data's depth must pick the true pair on every image, and the
    cloud's depth image must follow the data's at the true pose. A frame or sign slip (the
    table's y points down) reverses both."""
    de = _depth_em_module()
    _sharp_helix_cell(tmp_path, 12)
    cell = de.Cell(tmp_path, 12)
    flip = torch.diag(torch.tensor([1.0, 1.0, -1.0]))
    true = torch.tensor(cell.rotations[:12], dtype=torch.float32)
    sites = torch.tensor(cell.sites, dtype=torch.float32)
    centre = de._centroids(cell.data[0]) - (true @ sites.mean(0))[:, :2]
    size = cell.data[0].shape[-1]
    right = de.model_images(sites, true, centre, cell.sigma, size)
    mirror = de.model_images(sites @ flip, flip @ true @ flip, centre, cell.sigma, size)
    assert torch.allclose(right[0], mirror[0], atol=1e-4)  # the same intensity images
    dev_r, chi_r = de.deviance_and_depth(right, cell.data, cell.sigma_z)
    dev_m, chi_m = de.deviance_and_depth(mirror, cell.data, cell.sigma_z)
    assert torch.allclose(dev_r, dev_m, rtol=1e-3)
    assert (chi_r < chi_m).all(), (chi_r, chi_m)
    follows = [np.corrcoef(right[1][i].ravel(), cell.data[1][i].ravel())[0, 1] for i in range(12)]
    assert min(follows) > 0.3, follows


def test_depth_em_tool_runs_its_rounds_and_refuses_bad_input(tmp_path):
    """tools/depth_em.py end to end on a tiny cell: a round prints its Chamfer / blob and hands,
    and a bad --start or a missing cell exits 2 naming it."""
    small = ["--images", "8", "--rotations", "64", "--fit-steps", "20", "--rounds", "1"]
    tool, done = _round_from_the_truth(tmp_path, "depth_em.py", 8, small)
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("start: Chamfer / blob ") and lines[-1].startswith("round 1: ")
    assert "hands" in lines[-1], done.stdout
    for bad in ("mirrored:2", "ball"):
        refused = subprocess.run(tool + ["--start", bad], capture_output=True, text=True)
        assert refused.returncode == 2 and bad in refused.stderr, refused.stderr
    missing = subprocess.run(tool[:2] + [str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nowhere" in missing.stderr


# ---------------------------------------------------------------- one real tiny cell


def _tool(tmp_path, *args):
    cmd = [sys.executable, str(REPO / "tools" / "robustness.py"), "--scale", "tiny"]
    cmd += ["--shapes", "tetrapod", "--out", str(tmp_path / "out"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_one_tiny_cell_through_the_real_cli_chain(tmp_path):
    done = _tool(tmp_path, "--cells", "base", "--half-sets")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "cells" / "tetrapod-base.json").read_text())
    assert record["status"] == "done", record.get("error")
    assert 0 < record["chamfer_ratio_to_blob"] < 10
    assert 0 <= record["pose_error_median_deg"] <= 180
    assert 0 < record["flatness"] <= 1 and 0 <= record["tilt_p90_deg"] <= 90
    assert 0 < record["tilt_p90_simulated_deg"] <= 90
    assert 0 < record["resolution_0143_nm"] and 0 < record["resolution_0143_fraction"]
    assert (
        record["config"]["data"]["source"] == "zarr" and record["config"]["train"]["threads"] == 1
    )
    assert set(record["timings_s"]) >= {"simulate", "localise", "train", "compare", "evaluate"}
    assert done.stdout.strip().endswith("robustness.md")
    table = (tmp_path / "out" / "robustness.md").read_text()
    assert "| tetrapod | base |" in table
    # a rerun skips the finished cell
    again = _tool(tmp_path, "--cells", "base", "--half-sets")
    assert again.returncode == 0 and "tetrapod-base is finished: skipped" in again.stderr


def test_prior_cell_runs(tmp_path):
    done = _tool(tmp_path, "--cells", "tetrapod-tilt30-prior", "--with-prior")
    record = json.loads((tmp_path / "out" / "cells" / "tetrapod-tilt30-prior.json").read_text())
    assert done.returncode == 0 and record["status"] == "done", record.get("error")
    assert record["config"]["model"]["pose_prior"] == "tilt"


def test_overrides_reach_every_training_and_a_change_reruns_the_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(rb, "cell_scores", lambda work, half_sets: {"chamfer_ratio_to_blob": 0.4})
    cell = rb.select(rb.grid(["logo"]), ["base"])[0]
    cfg = rb.train_config(cell, rb.SCALES["small"], 1, tmp_path, 2, {"loss.kind": "l2"})
    assert cfg["loss"]["kind"] == "l2" and cfg["validation"] == {"half": 2}
    assert cfg["model"]["num_points"] == 150  # the rest of the section is kept
    with pytest.raises(HollyError, match="SECTION.KEY=VALUE"):
        rb.train_config(cell, rb.SCALES["tiny"], 1, tmp_path, None, {"kind": "l2"})
    calls = []
    record = rb.run_cells([cell], tmp_path, "tiny", 0, fake_runner(calls), overrides={})[0]
    assert record["overrides"] == {}
    calls.clear()
    rb.run_cells([cell], tmp_path, "tiny", 0, fake_runner(calls), overrides={})
    assert calls == []  # finished with the same overrides: skipped
    record = rb.run_cells(
        [cell], tmp_path, "tiny", 0, fake_runner(calls), overrides={"loss.kind": "l2"}
    )[0]
    assert "train" in calls and record["overrides"] == {"loss.kind": "l2"}
    assert '"kind": "l2"' in record["commands"][2][3]


def test_localise_overrides_become_localise_options_not_config_keys(tmp_path):
    cell = rb.select(rb.grid(["tetrapod"]), ["base"])[0]
    overrides = {"localise.centre": "centroid", "loss.kind": "l2"}
    steps = dict(rb.commands(cell, rb.SCALES["tiny"], 1, tmp_path, overrides))
    localise = steps["localise"]
    assert localise[localise.index("--centre") + 1] == "centroid"
    for name in ("train", "train_half1", "train_half2"):
        cfg = json.loads(steps[name][steps[name].index("--config-json") + 1])
        assert "localise" not in cfg and cfg["loss"]["kind"] == "l2"
    assert "--centre" not in steps["train"] and "--centre" not in steps["simulate"]
    flags = {"localise.size_cut": True, "localise.force": False, "localise.margin": 0.1}
    assert rb.localise_options(flags) == ["--size-cut", "--margin", "0.1"]


def test_tool_refuses_a_malformed_set(tmp_path):
    tool = Path(__file__).resolve().parents[1] / "tools" / "robustness.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--set", "kind=l2", "--out", str(tmp_path), "--scale", "tiny"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "SECTION.KEY=VALUE" in done.stderr
    assert not (tmp_path / "cells").exists()


def test_cells_blur_the_cloud_by_the_precision_and_rerun_when_their_commands_change(
    tmp_path, monkeypatch
):
    """Every cell trains with render.data_blur: store (the simulated tables carry their
    precision); a record whose commands differ from today's (an older holly's settings) is not
    taken as finished."""
    monkeypatch.setattr(rb, "cell_scores", lambda work, half_sets: {"chamfer_ratio_to_blob": 0.4})
    cell = rb.select(rb.grid(["tetrapod"]), ["base"])[0]
    cfg = rb.train_config(cell, rb.SCALES["default"], 1, tmp_path, None)
    assert cfg["render"]["data_blur"] == "store" and from_dict(cfg).render.data_blur == "store"
    calls = []
    rb.run_cells([cell], tmp_path, "tiny", 0, fake_runner(calls))
    path = tmp_path / "cells" / "tetrapod-base.json"
    record = json.loads(path.read_text())
    record["commands"][2][3] = record["commands"][2][3].replace('"data_blur": "store"', "")
    path.write_text(json.dumps(record))
    calls.clear()
    rb.run_cells([cell], tmp_path, "tiny", 0, fake_runner(calls))
    assert "train" in calls  # the old record's commands differ: it ran again
    calls.clear()
    rb.run_cells([cell], tmp_path, "tiny", 0, fake_runner(calls))
    assert calls == []
