"""No output replaces an input, and `--force` replaces only what holly wrote (issue 24).

Each case must end with exit 2, one `error:` line, and every file as it was.
"""

import json
import os
import zipfile

import numpy as np
import pytest
from conftest import make_fake_run

from holly.atomic import refuse_inputs
from holly.cli import main
from holly.data.imagestore import is_holly_store
from holly.errors import HollyError


def snapshot(root):
    """Every file under ``root`` with its bytes (what "nothing changed" compares)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]


def ends_well(capsys, argv, root, *words):
    before = snapshot(root)
    assert main([str(a) for a in argv]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    assert snapshot(root) == before
    return lines[0]


def test_refuse_inputs_same_path_holder_inside_and_symlinks(tmp_path):
    store = tmp_path / "s.zarr"
    store.mkdir()
    link = tmp_path / "link.ply"
    link.symlink_to(tmp_path / "gt.ply")
    for out in (store, tmp_path, store / "x.json", link, tmp_path / "sub" / ".." / "s.zarr"):
        target = store if out != link else tmp_path / "gt.ply"
        with pytest.raises(HollyError, match="would replace the input"):
            refuse_inputs({"--out": out}, [target])
    refuse_inputs({"--out": tmp_path / "other.json", "--aligned": None}, [store, None])


def test_evaluate_out_onto_the_ground_truth(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    ends_well(
        capsys,
        ["evaluate", run, "--out", run / "ground_truth.ply"],
        run,
        "--out",
        "ground_truth.ply",
    )


def test_evaluate_aligned_onto_the_points(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    ends_well(capsys, ["evaluate", run, "--aligned", run / "points.ply"], run, "--aligned")


def test_evaluate_default_aligned_onto_a_ground_truth_given(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    gt = run / "aligned_points.ply"  # the default --aligned is the cloud it would score against
    ends_well(capsys, ["evaluate", run, "--ground-truth", gt, "--out", tmp_path / "e.json"], run)


def test_evaluate_through_a_symlink(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    (tmp_path / "innocent.json").symlink_to(run / "ground_truth.ply")
    ends_well(capsys, ["evaluate", run, "--out", tmp_path / "innocent.json"], run, "--out")


def test_evaluate_into_its_own_folder_still_works(tmp_path, capsys):
    run = make_fake_run(tmp_path / "run")
    assert main(["evaluate", str(run), "--out", str(run / "evaluation.json")]) == 0


@pytest.mark.parametrize("option", ["--aligned", "--out", "--figure"])
def test_compare_outputs_onto_a_half(tmp_path, capsys, option):
    h1 = make_fake_run(tmp_path / "h1", evaluated=False)
    h2 = make_fake_run(tmp_path / "h2", evaluated=False, seed=1)
    argv = ["compare", h1, h2, "--out", tmp_path / "c.json"]
    target = {"--aligned": h1 / "points.ply", "--out": h2 / "config.yaml"}
    target["--figure"] = h1 / "ground_truth.ply"
    if option == "--out":
        argv = ["compare", h1, h2, "--out", target["--out"]]
    else:
        argv += [option, target[option]]
    ends_well(capsys, argv, tmp_path, option)


def write_store(path, n=8, size=8):
    import holly.data.imagestore as imagestore
    from holly.data.imagestore import StoreWriter, base_attrs

    images = np.random.default_rng(0).random((n, size, size), dtype=np.float32) + 0.1
    with StoreWriter(path, n_images=n, height=size, width=size, sigmas=[2.0]) as w:
        w.write_level(2.0, [images])
        w.write_array("particle_id", np.arange(n, dtype=np.int32))
        w.commit(
            base_attrs(
                n_images=n, height=size, width=size, sigmas=[2.0],
                orientation=imagestore.ORIENTATION, source={}, params={},
            )
        )  # fmt: skip
    return path


@pytest.mark.parametrize("where", ["store", "inside", "parent"])
def test_train_out_at_its_own_image_store(tmp_path, capsys, where):
    store = write_store(tmp_path / "data" / "s.zarr")
    out = {"store": store, "inside": store / "run", "parent": store.parent}[where]
    cfg = {
        "data": {"source": "zarr", "store": str(store)},
        "render": {"height": 8, "width": 8},
        "sigma": {"values": [2.0]},
    }
    argv = ["train", "--config-json", json.dumps(cfg), "--out", out, "--force"]
    ends_well(capsys, argv, tmp_path, "--out", "would replace the input")


def test_train_out_holding_its_shape_file(tmp_path, capsys):
    shape = tmp_path / "run" / "shape.csv"
    shape.parent.mkdir()
    shape.write_text("x,y,z\n0.5,0,0\n0,0.5,0\n0,0,0.5\n")
    cfg = {"data": {"shape": str(shape)}}
    ends_well(capsys, ["train", "--config-json", json.dumps(cfg), "--out", shape.parent], tmp_path)


def user_ome_zarr(path):
    """A user's own OME-Zarr folder: zarr.json without holly's attributes, plus notes."""
    path.mkdir()
    (path / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"ome": {}}})
    )
    (path / "notes.txt").write_text("my notes")
    return path


def fits_source(root):
    from test_force import fits_tree

    fits_tree(root)
    return root


def test_ingest_force_onto_a_users_zarr_folder(tmp_path, capsys):
    src = fits_source(tmp_path / "src")
    mine = user_ome_zarr(tmp_path / "mine.zarr")
    line = ends_well(capsys, ["ingest", src, "--out", mine, "--force"], tmp_path)
    assert "holly did not write" in line


def test_simulate_force_onto_a_users_zarr_folder(tmp_path, capsys):
    mine = user_ome_zarr(tmp_path / "mine.zarr")
    cfg = {"data": {"particles": 4, "test_particles": 1}, "render": {"height": 8, "width": 8}}
    argv = ["simulate", "--config-json", json.dumps(cfg), "--out", mine, "--force"]
    argv += ["--sigmas", "2"]
    ends_well(capsys, argv, tmp_path, "holly did not write")


def test_force_still_replaces_holly_stores_and_exports(tmp_path, capsys):
    src = fits_source(tmp_path / "src")
    out, ome = tmp_path / "s.zarr", tmp_path / "s.ome.zarr"
    assert main(["ingest", str(src), "--out", str(out), "--ome-zarr", str(ome)]) == 0
    assert is_holly_store(out) and is_holly_store(ome)
    argv = ["ingest", str(src), "--out", str(out), "--ome-zarr", str(ome), "--force"]
    assert main(argv) == 0
    # an export written before the marker had a kind: recognised by its exported_from
    meta = json.loads((ome / "zarr.json").read_text())
    del meta["attributes"]["holly"]["kind"]
    (ome / "zarr.json").write_text(json.dumps(meta))
    assert is_holly_store(ome)
    assert not is_holly_store(tmp_path) and not is_holly_store(tmp_path / "nope")


@pytest.mark.parametrize("where", ["empty", "store", "elsewhere"])
def test_ingest_out_dot_force_is_a_clean_error(tmp_path, monkeypatch, capsys, where):
    src = fits_source(tmp_path / "src")
    cwd = {"empty": tmp_path / "empty", "store": tmp_path / "s.zarr"}.get(where, tmp_path / "e")
    if where == "store":
        assert main(["ingest", str(src), "--out", str(cwd)]) == 0
    else:
        cwd.mkdir()
        (cwd / "x.txt").write_text("x") if where == "elsewhere" else None
    monkeypatch.chdir(cwd)
    ends_well(capsys, ["ingest", src, "--out", ".", "--force"], tmp_path)
    assert os.getcwd() == str(cwd)


def test_train_force_never_replaces_files_holly_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my: own config\n")
    (out / "metrics.csv").write_text("a,b\n1,2\n")
    cfg = {"data": {"particles": 4, "test_particles": 1}, "train": {"max_steps": 1}}
    for extra in (["--force"], ["--resume", "auto"]):
        argv = ["train", "--config-json", json.dumps(cfg), "--out", out, *extra]
        ends_well(capsys, argv, tmp_path, "no provenance.json of a holly run")


def test_train_resume_never_takes_a_checkpoint_holly_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    with zipfile.ZipFile(out / "checkpoints" / "last.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"someone else's model")  # a torch file, not holly's
    cfg = {"data": {"particles": 4, "test_particles": 1}, "train": {"max_steps": 1}}
    argv = ["train", "--config-json", json.dumps(cfg), "--out", out, "--resume", "auto"]
    ends_well(capsys, argv, tmp_path, "no provenance.json of a holly run")
    # a holly checkpoint without provenance.json (Snakemake deleted the failed job's outputs)
    # is holly's: tests/test_train.py::test_resume_after_outputs_were_deleted


def test_train_force_replaces_a_holly_run(tmp_path):
    run = make_fake_run(tmp_path / "run")
    old = (run / "points.ply").read_bytes()
    cfg = {
        "data": {"particles": 8, "test_particles": 2, "augment": 1},
        "render": {"height": 16, "width": 16},
        "model": {"num_points": 8},
        "sigma": {"values": [2.0]},
        "train": {"max_steps": 1, "batch_size": 4, "test_images": 2, "threads": 1},
    }
    argv = ["train", "--config-json", json.dumps(cfg), "--out", str(run), "--force"]
    assert main(argv) == 0
    assert (run / "points.ply").read_bytes() != old
    assert np.isfinite(np.loadtxt(run / "metrics.csv", delimiter=",", skiprows=1, usecols=0)).all()


@pytest.mark.parametrize(
    "argv",
    [
        lambda run: ["viewer", run, "--out", run / "points.ply"],
        lambda run: ["export", run, "--out", run / "points.ply"],
        lambda run: ["summarise", f"--run=x={run}", "--out", run / "metrics.csv"],
        lambda run: ["summarise", f"--run=x={run}", "--out", run / "s.csv", "--chart", run],
        lambda run: [
            "report",
            f"--run=x={run}",
            "--summary",
            run / "s.csv",
            "--out",
            run / "s.csv",
        ],
        lambda run: ["pick", run, "ground_truth.ply", "--out", run / "ground_truth.ply"],
    ],
    ids=["viewer", "export", "summarise", "chart", "report", "pick"],
)
def test_other_writers_refuse_their_inputs(tmp_path, capsys, argv):
    run = make_fake_run(tmp_path / "run")
    (run / "s.csv").write_text("experiment\nx\n")
    ends_well(capsys, argv(run), tmp_path, "would replace the input")
