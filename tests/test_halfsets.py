"""Half-set validation (holly/results/halfsets.py): the split by particle, seeds, configs,
comparison."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import make_fake_run

from holly.cli import main
from holly.config import from_dict
from holly.data.halves import half_seed, split_halves, take_half, training_seed
from holly.data.realdata import StoreSplit
from holly.data.shapes import builtin_shape
from holly.data.simulate import simulate
from holly.errors import HollyError
from holly.results.halfsets import compare_clouds


def test_split_halves_puts_each_particle_in_exactly_one_half():
    ids = np.repeat(np.random.default_rng(0).permutation(101), 3)  # 3 copies per particle
    first, second = split_halves(ids, seed=7)
    assert set(ids[first]).isdisjoint(ids[second])
    assert np.array_equal(np.sort(np.concatenate([first, second])), np.arange(len(ids)))
    assert abs(len(set(ids[first])) - len(set(ids[second]))) <= 1
    again = split_halves(ids, seed=7)
    assert np.array_equal(first, again[0])
    other = split_halves(ids, seed=8)[0]
    assert not np.array_equal(first, other)
    with pytest.raises(HollyError, match="at least two"):
        split_halves(np.zeros(5, int), 0)


def test_simulated_halves_are_disjoint_particles_with_all_their_copies():
    cfg = from_dict({"data": {"shape": "tetrapod", "particles": 20, "augment": 4}})
    train, _ = simulate(builtin_shape("tetrapod"), cfg)
    h1, h2 = take_half(train, 1, cfg.seed), take_half(train, 2, cfg.seed)
    assert len(h1) + len(h2) == len(train) and len(h1) % 4 == 0 and len(h2) % 4 == 0
    # particles are identified by their (unique, random) base rotations
    r1, r2 = h1.base_rotations.reshape(-1, 9), h2.base_rotations.reshape(-1, 9)
    assert torch.cdist(r1, r2).min() > 1e-3
    assert len(r1) + len(r2) == 20
    # an item of a half renders exactly as the same item of the full set
    first = split_halves(train.particle_ids(), cfg.seed)[0]
    assert torch.equal(
        h1.images(torch.tensor([5]), 2.0), train.images(torch.tensor([first[5]]), 2.0)
    )
    assert torch.equal(h1.rotations(torch.tensor([5])), train.rotations(torch.tensor([first[5]])))


def test_store_halves_split_by_particle_id():
    class FakeStore:
        particle_ids = np.repeat(np.arange(10), 2)

    split = StoreSplit(FakeStore(), np.arange(4, 20), preload=False, device=torch.device("cpu"))
    h1, h2 = take_half(split, 1, 0), take_half(split, 2, 0)
    ids1, ids2 = FakeStore.particle_ids[h1.indices], FakeStore.particle_ids[h2.indices]
    assert set(ids1).isdisjoint(ids2) and set(ids1) | set(ids2) == set(range(2, 10))


def test_half_seeds_differ_and_config_keys_validate():
    assert len({half_seed(0, 1), half_seed(0, 2), half_seed(1, 1)}) == 3
    assert half_seed(5, 2) == half_seed(5, 2)
    cfg = from_dict({"seed": 4, "validation": {"half": 2}})
    assert training_seed(cfg) == half_seed(4, 2) and training_seed(from_dict({"seed": 4})) == 4
    with pytest.raises(HollyError, match="validation.half"):
        from_dict({"validation": {"half": 3}})
    assert from_dict({"data": {"source": "zarr", "store": "x"}}).half_sets
    assert not from_dict({}).half_sets and from_dict({"validation": {"half_sets": True}}).half_sets
    zarr_off = {"data": {"source": "zarr", "store": "x"}, "validation": {"half_sets": False}}
    assert not from_dict(zarr_off).half_sets


def test_compare_clouds_undoes_a_mirrored_move():
    a = builtin_shape("tetrapod")[::3]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    b = a @ (q @ np.diag([1.0, 1.0, -1.0])).T + 0.3
    scores, aligned = compare_clouds(a, b, sigma=0.1)
    assert scores["chamfer"] < 1e-6 and np.abs(aligned - a).max() < 1e-6
    assert scores["fsc"]["resolution_0143_limited"] and scores["fsc"]["resolution_05_limited"]


def test_compare_cli_on_two_runs(tmp_path):
    a = make_fake_run(tmp_path / "h1", n_points=60, seed=0)
    b = make_fake_run(tmp_path / "h2", n_points=60, seed=1)
    out, fig, al = tmp_path / "c.json", tmp_path / "fsc.png", tmp_path / "al.ply"
    assert (
        main(
            [
                "compare",
                str(a),
                str(b),
                "--out",
                str(out),
                "--figure",
                str(fig),
                "--aligned",
                str(al),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    # the fake runs sample the same ground truth with 0.02 noise: close halves, fine resolution
    assert result["chamfer"] < 0.2
    assert 0 < result["resolution_0143"] <= result["resolution_05"]
    assert result["resolution_0143_nm"] is None  # simulated: no pixel size
    assert set(result["vs_ground_truth"]) == {"a", "b"}
    assert fig.stat().st_size > 10_000 and al.is_file()


def test_compare_cli_errors(tmp_path, capsys):
    a = make_fake_run(tmp_path / "h1")
    assert main(["compare", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "c.json")]) == 2
    assert "error:" in capsys.readouterr().err


def test_train_half_cli_trains_on_its_half_with_its_own_seed(tmp_path):
    cfg = {
        "seed": 3,
        "data": {"shape": "tetrapod", "particles": 32, "test_particles": 2, "augment": 2},
        "render": {"height": 16, "width": 16},
        "model": {"num_points": 10},
        "sigma": {"values": [2.0]},
        "train": {"epochs": 1, "batch_size": 8, "log_every": 1, "test_images": 4, "threads": 1},
    }
    out = tmp_path / "half2"
    assert main(["train", "--config-json", json.dumps(cfg), "--out", str(out), "--half", "2"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seed"] == half_seed(3, 2) and prov["config"]["validation"]["half"] == 2
    steps = [json.loads(json.dumps(r)) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(steps) == 32 * 2 // 2 // 8  # one epoch over half the images


def test_compare_reports_nm_from_the_image_store(tmp_path):
    import zarr

    from holly.data.imagestore import ATTR_KEY

    store = tmp_path / "s.zarr"
    sim = {
        "data": {"shape": "spiral", "particles": 4, "augment": 1},
        "render": {"height": 16, "width": 16},
        "sigma": {"values": [2.0]},
    }
    assert main(["simulate", "--config-json", json.dumps(sim), "--out", str(store)]) == 0
    group = zarr.open_group(store, mode="r+")
    group.attrs[ATTR_KEY] = {**group.attrs[ATTR_KEY], "nm_per_px": 10.0}
    runs = []
    for k in (1, 2):
        run = make_fake_run(tmp_path / f"h{k}", n_points=50, seed=k, simulated=False)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["data"] = {"source": "zarr", "store": str(store)}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        runs.append(str(run))
    out = tmp_path / "c.json"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fsc"]["nm_per_unit"] == pytest.approx(10.0 * 16 / 4)
    assert result["resolution_0143_nm"] == pytest.approx(40.0 * result["resolution_0143"])
    assert result["ground_truth"] is None and "vs_ground_truth" not in result


def test_compare_prefers_the_scale_recorded_in_provenance(tmp_path):
    runs = []
    for k in (1, 2):
        run = make_fake_run(tmp_path / f"h{k}", n_points=50, seed=k, simulated=False)
        prov = json.loads((run / "provenance.json").read_text())
        prov["scale"] = {"nm_per_px": 20.0, "nm_per_model_unit": 80.0, "from": "x.zarr"}
        (run / "provenance.json").write_text(json.dumps(prov))
        runs.append(str(run))
    out = tmp_path / "c.json"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["resolution_05_nm"] == pytest.approx(80.0 * result["resolution_05"])


def test_halves_of_in_plane_runs_are_compared_by_their_projections(tmp_path):
    """Runs held to in-plane poses (model.pose_prior: inplane) are flat by construction: their
    halves' resolution is the ring correlation of the xy projections, and says so."""
    import yaml

    from holly.results.halfsets import compare_runs

    runs = []
    for k in (1, 2):
        run = make_fake_run(tmp_path / f"h{k}", n_points=60, seed=k)
        cfg_path = run / "config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg.setdefault("model", {})["pose_prior"] = "inplane"
        cfg_path.write_text(yaml.safe_dump(cfg))
        runs.append(run)
    result = compare_runs(*runs)
    assert result["fsc"]["kind"] == "FRC of the xy projections"
    plain = compare_runs(
        make_fake_run(tmp_path / "p1", n_points=60, seed=1),
        make_fake_run(tmp_path / "p2", n_points=60, seed=2),
    )
    assert plain["fsc"]["kind"] == "FSC"


def test_halves_must_share_the_pose_prior_and_a_missing_key_is_its_default(tmp_path):
    import yaml

    from holly.errors import HollyError
    from holly.results.halfsets import compare_runs

    def run(name, seed, prior):
        path = make_fake_run(tmp_path / name, n_points=60, seed=seed)
        cfg = yaml.safe_load((path / "config.yaml").read_text())
        model = cfg.setdefault("model", {})
        model.pop("pose_prior", None)
        if prior is not None:
            model["pose_prior"] = prior
        (path / "config.yaml").write_text(yaml.safe_dump(cfg))
        return path

    with pytest.raises(HollyError, match="model.pose_prior 'inplane' vs 'uniform'"):
        compare_runs(run("a", 1, "inplane"), run("b", 2, "uniform"))
    # a run made before the key existed counts as uniform
    assert compare_runs(run("c", 1, None), run("d", 2, "uniform"))["fsc"]["kind"] == "FSC"
