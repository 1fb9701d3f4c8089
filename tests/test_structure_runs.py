"""The structure check through `holly evaluate`, the summary and the workflow, and tiny runs of
the real-data paths on the shared particle sets (``../shared/realdata/particles``, read in place,
never copied into the repository; the tests that need them skip where they are absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import ROOT, job_counts

from holly.cli import main
from holly.config import from_dict
from holly.results.evaluate import read_structure_model
from holly.results.structure import ring
from holly.train import train

REAL = ROOT.parent / "shared" / "realdata" / "particles"
EXAMPLES = ROOT / "config" / "examples"
TINY_TRAIN = {
    "steps": 8,
    "batch_size": 16,
    "log_every": 4,
    "snapshot_every": 4,
    "test_images": 8,
    "threads": 1,
}


def real(name):
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} absent (the shared real data are not in the repository)")
    return path


def test_evaluate_structure_on_a_simulated_run(tmp_path, capsys):
    cfg = {
        "seed": 1,
        "data": {"shape": "tetrapod", "particles": 24, "test_particles": 2, "augment": 2},
        "render": {"height": 32, "width": 32},
        "model": {"num_points": 20},
        "sigma": {"values": [3.0, 1.5]},
        "train": TINY_TRAIN,
    }
    run = train(from_dict(cfg), tmp_path / "run")
    assert main(["evaluate", str(run), "--structure", "flat", "--seed", "1"]) == 0
    block = json.loads((run / "evaluation.json").read_text())["structure"]
    assert block["check"] == "flat" and 0 < block["flatness"] <= 1
    assert block["extents_nm"] is None  # simulated: no nm scale
    assert main(["evaluate", str(run), "--structure-model", "x.ply"]) == 2
    assert "error: --structure-model needs --structure" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--structure", "flat", "--structure-model", "m.ply"]) == 2
    err = capsys.readouterr().err
    assert "error: --structure-model is used by --structure ring and tetrahedron only" in err
    assert main(["evaluate", str(run), "--structure", "ring", "--structure-model", "no.mat"]) == 2
    assert "structure model no.mat does not exist" in capsys.readouterr().err

    from holly.results.report import run_summary

    row = run_summary(run, "run")
    assert row["structure_check"] == "flat" and row["structure_flatness"] == block["flatness"]


def test_npc_model_is_an_eightfold_ring_of_about_48_nm():
    model = read_structure_model(real("npc_nup107_simulated/NPCModel.mat"))
    assert model.shape == (32, 3)
    out = ring(model)
    assert out["dominant_order"] == 8
    assert 46 < out["radius"] * 130 < 50  # two rings, ~47 and ~50 nm (README)


def _localised_tiny_run(tmp_path, source, particles, test_fraction, points, localise=(), model=()):
    """`holly localise` the first ``particles`` particles of a shared file (two copies each,
    32 px), then a few-step training of a ``points``-point cloud on the store (``model``: more
    model keys); returns the run folder."""
    accepted = tmp_path / "accepted.txt"
    accepted.write_text("\n".join(str(i) for i in range(particles)) + "\n")
    store = tmp_path / "localised.zarr"
    args = ["localise", str(source), "--out", str(store), "--sigmas", "3,1.5", "--size", "32"]
    args += [*localise, "--perturbations", "2", "--accepted", str(accepted)]
    assert main(args) == 0
    cfg = {
        "data": {"source": "zarr", "store": str(store), "test_fraction": test_fraction},
        "render": {"height": 32, "width": 32},
        "model": {"num_points": points, **dict(model)},
        "sigma": {"values": [3.0, 1.5]},
        "train": TINY_TRAIN,
    }
    return train(from_dict(cfg), tmp_path / "run")


def test_tud_logos_with_the_in_plane_prior_stay_flat_and_say_z_is_unresolved(tmp_path):
    """The real DNA-PAINT TUD logos at 30 % labelling (top views only) with the example
    config's `model.pose_prior: inplane`: the cloud is exactly flat, every written pose is an
    in-plane turn (or the flip to the other face), and the evaluation reports z unresolved."""
    source = real("tud_logo_dnapaint/tud_dol30.mat")
    localise = ("--format", "tud-mat", "--pixel-size", "130")
    model = {"pose_prior": "inplane"}
    run = _localised_tiny_run(tmp_path, source, 24, 0.1, 24, localise, model)
    assert main(["evaluate", str(run), "--structure", "flat"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["structure"]["flatness"] == 0.0
    assert result["views"]["unresolved_z"] is True
    assert result["views"]["pose_prior"]["kind"] == "inplane"
    poses = np.load(run / "test_poses.npz")
    assert np.all(np.abs(poses["rot_pred"][:, 2, 2]) == 1.0)


def test_tetrahedra_localised_trained_and_checked(tmp_path):
    """`holly localise` 24 of the shared tetrahedra, a few-step train, evaluate --structure:
    evaluation.json has the structure block, with the files' own precision."""
    folder = real("tetrahedron_simulated/aniso")
    run = _localised_tiny_run(tmp_path, folder, particles=24, test_fraction=0.1, points=24)
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["training_length"]["source"] == "train.steps"
    assert prov["training_length"]["short"]  # 8 steps: warned about
    models = real("tetrahedron_simulated/model")
    assert (
        main(["evaluate", str(run), "--structure", "tetrahedron", "--structure-model", str(models)])
        == 0
    )
    block = json.loads((run / "evaluation.json").read_text())["structure"]
    assert block["check"] == "tetrahedron" and len(block["edges"]) == 6
    assert 0 <= block["edge_spread_floor"] <= block["edge_spread_floor_p90"]
    # the held-out poses against each particle's model file: 2 test particles x 2 copies
    pose = block["pose_error_deg"]
    assert pose["images"] == 4 and pose["particles"] == 2
    assert 0 <= pose["refined"]["median"] <= 180 and 0 <= pose["amortised"]["median"] <= 180
    assert sum(block["cluster_sizes"]) == 24 and 0 <= block["compactness"] <= 1
    # the precision is the files' median sigma_xy, converted to model units
    import pandas as pd

    files = sorted(folder.iterdir())[:24]  # read order: names sorted
    sigma = np.concatenate([pd.read_csv(f)["sigma_xy"].to_numpy() for f in files])
    assert block["precision"] * block["source_per_unit"] == pytest.approx(np.median(sigma))
    assert block["edge_mean_source"] == pytest.approx(block["edge_mean"] * block["source_per_unit"])
    # the flat check adds the localisations' own extents (no nm: the files are unitless)
    out = tmp_path / "flat.json"
    assert main(["evaluate", str(run), "--structure", "flat", "--out", str(out)]) == 0
    flat = json.loads(out.read_text())["structure"]
    assert len(flat["data_extents"]) == 2 and flat["data_extents_nm"] is None
    # a tetrahedron of edge 1 projected: each particle spans about an edge (x px_per_unit)
    assert 0.5 < flat["data_extents"][0] * flat["source_per_unit"] < 1.5


@pytest.mark.parametrize(
    "name, rule_counts",
    [("tetrahedra", {"localise": 1, "train": 1, "train_half": 2, "compare_halves": 1})],
)
def test_real_data_example_configs_plan(name, rule_counts):
    real("tetrahedron_simulated/aniso")
    from test_workflow import snakemake

    # --forceall: the whole plan, even where a developer's checkout already holds the results
    config = str(EXAMPLES / f"realdata-{name}.yaml")
    proc = snakemake("-n", "-p", "--forceall", "--configfile", config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert {k: counts.get(k) for k in rule_counts} == rule_counts
    assert "--structure tetrahedron" in proc.stdout


@pytest.mark.parametrize("name", ["tetrahedra", "npc", "tud"])
def test_real_data_example_configs_say_where_the_data_come_from(name):
    text = (EXAMPLES / f"realdata-{name}.yaml").read_text()
    assert "github.com/" in text and "checkout" in text
    prose = " ".join(line.lstrip("# ").strip() for line in text.splitlines())
    assert "only the holly developers' copy" in prose
    cfg = yaml.safe_load(text)
    for entry in cfg["localisations"].values():
        assert entry["path"].startswith("../shared/realdata/particles/")
    for exp in cfg["experiments"]:
        assert exp["train"]["steps"] == 2000
        check = cfg["evaluation"]["structure"][exp["name"]]["check"]
        assert check in ("tetrahedron", "ring", "flat")


def test_structure_model_files(tmp_path):
    import scipy.io

    from holly.errors import HollyError

    pts = np.arange(30, dtype=float).reshape(10, 3)
    scipy.io.savemat(tmp_path / "one.mat", {"Model": pts.T})  # 3 x M is read as M x 3
    assert np.array_equal(read_structure_model(tmp_path / "one.mat"), pts)
    scipy.io.savemat(tmp_path / "two.mat", {"a": pts, "b": pts})
    with pytest.raises(HollyError, match=r"two\.mat: expected one numeric M x 3 array"):
        read_structure_model(tmp_path / "two.mat")
    (tmp_path / "bad.mat").write_text("not matlab")
    with pytest.raises(HollyError, match=r"bad\.mat"):
        read_structure_model(tmp_path / "bad.mat")


def test_plan_takes_a_model_folder_for_the_tetrahedron_check(tmp_path):
    from holly.errors import HollyError
    from holly.plan import resolve_structure

    config = {"experiments": [{"name": "t"}]}
    experiments = {"t": {}}

    def spec(check, model):
        return {**config, "evaluation": {"structure": {"t": {"check": check, "model": model}}}}

    out = resolve_structure(spec("tetrahedron", str(tmp_path)), experiments)
    assert out["t"]["model"] == str(tmp_path)
    with pytest.raises(HollyError, match="model folder .* does not exist"):
        resolve_structure(spec("tetrahedron", str(tmp_path / "none")), experiments)
    (tmp_path / "m.ply").write_text("")
    with pytest.raises(HollyError, match="model folder"):  # a file is no folder of models
        resolve_structure(spec("tetrahedron", str(tmp_path / "m.ply")), experiments)
    with pytest.raises(HollyError, match="used by the ring and tetrahedron checks only"):
        resolve_structure(spec("flat", str(tmp_path / "m.ply")), experiments)


def test_npc_localised_trained_and_checked_with_site_recall(tmp_path):
    """12 of the shared pores through `holly localise`, a few-step train and the ring check
    against NPCModel.mat: the block has the binding-site recall beside the radius."""
    data = real("npc_nup107_simulated/data.mat")
    model = real("npc_nup107_simulated/NPCModel.mat")
    run = _localised_tiny_run(
        tmp_path, data, particles=12, test_fraction=0.2, points=32, localise=["--pixel-size", "130"]
    )
    check = ["--structure", "ring", "--structure-model", str(model), "--model-nm-per-unit", "130"]
    assert main(["evaluate", str(run), *check]) == 0
    block = json.loads((run / "evaluation.json").read_text())["structure"]
    assert block["radius_nm"] > 0 and 0 <= block["site_recall"] <= 1
    assert block["sites"]["distances_nm"] == [5.0, 10.0, 15.0, 20.0]
    assert all(0 <= r <= 1 for r in block["sites"]["point_precision_2d"])


def test_npc_model_sites_are_all_recalled_by_themselves():
    from holly.results.sites import site_recall

    sites = read_structure_model(real("npc_nup107_simulated/NPCModel.mat")) * 130
    out = site_recall(sites + 0.5, sites)
    assert out["site_recall_headline"] == 1.0 and out["point_precision"] == [1.0] * 4
