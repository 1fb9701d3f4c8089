#!/usr/bin/env python3
"""Probe holly with bad inputs and faults, as a new user would meet them (issue 9).

Every case runs one `holly` command in-process (or one plan-time check) in a scratch folder and
"ends well" when it exits 2 with exactly one `error:` line and no traceback, leaves its inputs
intact, and, for the data-loss cases, deletes nothing it should keep. Prints each failure and a
count:

    python tools/probe_bad_inputs.py            # all cases (about 1.5 minutes on 2 cores)
    python tools/probe_bad_inputs.py --quick    # the cases without figures or training

Exit status 0 when every case ended well.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from holly.cli import main  # noqa: E402
from holly.config import describe  # noqa: E402
from holly.errors import HollyError  # noqa: E402

TINY = {
    "seed": 1,
    "data": {"shape": "tetrapod", "particles": 16, "test_particles": 2},
    "render": {"height": 16, "width": 16},
    "model": {"num_points": 8},
    "sigma": {"values": [2.0]},
    "train": {"epochs": 1, "batch_size": 8, "log_every": 1, "test_images": 2, "threads": 1},
}


class Probe:
    def __init__(self, work: Path):
        self.work, self.tried, self.failures = work, 0, []

    def cli(self, name: str, argv: list[str], expect: int = 2, check=None, says=None) -> None:
        """One command: exit ``expect``; on 2, exactly one ``error:`` line (containing ``says``
        when given); ``check()`` holds."""
        self.tried += 1
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: exit 2 with a usage line, fine
            rc = exc.code
        except BaseException:  # noqa: BLE001 - a traceback is exactly what the probe looks for
            self.failures.append(f"{name}: traceback\n{traceback.format_exc(limit=3)}")
            return
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
        if rc != expect:
            self.failures.append(f"{name}: exit {rc}, expected {expect}: {err.getvalue()[-300:]}")
        elif expect == 2 and len(lines) != 1 and "usage:" not in err.getvalue():
            self.failures.append(f"{name}: {len(lines)} error lines: {err.getvalue()[-300:]}")
        elif says is not None and not any(says in line for line in lines):
            self.failures.append(f"{name}: the error does not say {says!r}: {lines}")
        elif check is not None and not check():
            self.failures.append(f"{name}: its check failed (data loss or wrong output)")

    def call(self, name: str, fn, exc=HollyError) -> None:
        """A library call that must raise ``exc`` (a HollyError), not anything else."""
        self.tried += 1
        try:
            fn()
        except exc:
            return
        except BaseException:  # noqa: BLE001
            self.failures.append(f"{name}: {traceback.format_exc(limit=2)}")
            return
        self.failures.append(f"{name}: accepted")


def config_cases(p: Probe) -> None:
    """Every float key NaN and inf, every bounded key out of range, wrong types."""
    out = p.work / "never"
    for row in describe():
        key, typ = row["key"], row["type"]
        section, _, name = key.rpartition(".")

        def with_value(value, section=section, name=name):
            cfg = copy.deepcopy(TINY)
            (cfg.setdefault(section, {}) if section else cfg)[name] = value
            return json.dumps(cfg, allow_nan=True)

        if "float" in typ:
            for bad in (math.nan, math.inf, -math.inf):
                p.cli(
                    f"config {key}={bad}", ["train", "--config-json", with_value(bad), "--out", out]
                )
        if row["lo"] is not None and ("int" in typ or "float" in typ):
            p.cli(
                f"config {key} below",
                ["train", "--config-json", with_value(row["lo"] - 1), "--out", out],
            )
        if row["hi"] is not None and ("int" in typ or "float" in typ):
            p.cli(
                f"config {key} above",
                ["train", "--config-json", with_value(row["hi"] * 10 + 1), "--out", out],
            )
        if row["choices"]:
            p.cli(
                f"config {key} choice",
                ["train", "--config-json", with_value("nonsense"), "--out", out],
            )
        if typ in ("<class 'int'>", "<class 'bool'>"):
            p.cli(f"config {key} text", ["train", "--config-json", with_value("ten"), "--out", out])
    assert not out.exists(), "a bad config created its --out folder"


def config_file_cases(p: Probe) -> None:
    w, out = p.work, p.work / "never2"
    files = {
        "empty.yaml": "",
        "comment.yaml": "# nothing\n",
        "list.yaml": "- 1\n- 2\n",
        "broken.yaml": "train: [unclosed\n",
        "nan.yaml": "train: {lr: .nan}\n",
        "inf.yaml": "sigma: {values: [2.0, .inf]}\n",
        "unknown.yaml": "trian: {epochs: 1}\n",
        "binary.yaml": "\udcff",
    }
    for name, text in files.items():
        path = w / name
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        p.cli(f"config file {name}", ["train", "--config", path, "--out", out])
    p.cli("config missing", ["train", "--config", w / "nope.yaml", "--out", out])
    p.cli("config is a folder", ["train", "--config", w, "--out", out])
    p.cli("no config at all", ["train", "--out", out])
    p.cli("config-json not JSON", ["train", "--config-json", "{nope", "--out", out])
    p.cli("config-json a list", ["train", "--config-json", "[1]", "--out", out])
    p.cli("config-json NaN", ["train", "--config-json", '{"train": {"lr": NaN}}', "--out", out])
    p.cli(
        "max-steps 0",
        ["train", "--config-json", json.dumps(TINY), "--max-steps", "0", "--out", out],
    )
    p.cli(
        "unknown shape",
        ["train", "--config-json", json.dumps({**TINY, "data": {"shape": "blob"}}), "--out", out],
    )
    (w / "a_file").write_text("x")
    p.cli("out is a file", ["train", "--config-json", json.dumps(TINY), "--out", w / "a_file"])
    p.cli(
        "out under a file",
        ["train", "--config-json", json.dumps(TINY), "--out", w / "a_file" / "r"],
    )
    for text, what in (
        ("", "empty"),
        ("x,y,z\n1,1,1\n1,1,1\n", "no extent"),
        ("x,y,z\n1e400,0,0\n0,1,0\n", "overflow"),
        ("x,y,z\n50,0,0\n0,60,0\n0,0,70\n", "outside frame"),
        ("x,y,z\na,b,c\n", "text"),
        ("x,y\n1,2\n", "two columns"),
    ):
        shape = w / f"shape_{what.replace(' ', '_')}.csv"
        shape.write_text(text)
        cfg = {**TINY, "data": {**TINY["data"], "shape": str(shape)}}
        p.cli(f"shape {what}", ["train", "--config-json", json.dumps(cfg), "--out", out])
    assert not out.exists()


def run_folder_cases(p: Probe, quick: bool) -> None:
    from conftest import make_fake_run

    corruptions = {
        "metrics.csv": [
            b"",
            b"step,train_loss\n1,2\n",
            b"step,train_loss,test_loss,sigma_in\nx,1,2,3\n",
            b"\xff\x00",
        ],
        "config.yaml": [b"data: [unclosed\n", b"- list\n", b"\xff\xfe"],
        "provenance.json": [b"{nope", b"[1]"],
        "evaluation.json": [b"{nope", b"[]"],
        "samples.npz": [b"PK\x03\x04junk", b""],
        "test_poses.npz": [b"junk"],
        "points.ply": [b"ply\nformat ascii 1.0\nend_header\n", b"junk"],
        "ground_truth.ply": [b"junk"],
        "aligned_points.ply": [b"junk"],
        "initial_points.ply": [b"junk"],
    }
    commands = {
        "evaluate": lambda run: ["evaluate", run, "--out", run / "e2.json"],
        "viewer": lambda run: ["viewer", run, "--out", run / "v.html"],
        "summarise": lambda run: ["summarise", f"--run=x={run}", "--out", run / "s.csv"],
    }
    if not quick:
        commands["figures"] = lambda run: ["figures", run, "--out", run / "figs"]
    k = 0
    for name, contents in corruptions.items():
        for content in contents:
            for cmd, argv in commands.items():
                run = make_fake_run(p.work / f"run{k}", n_points=20, steps=20, snapshot_every=10)
                k += 1
                (run / name).write_bytes(content)
                # a command that does not read this file may succeed: then exit 0 is fine too
                reads = {
                    "evaluate": {
                        "metrics.csv",
                        "config.yaml",
                        "test_poses.npz",
                        "points.ply",
                        "ground_truth.ply",
                        "initial_points.ply",
                    },
                    "viewer": {
                        "points.ply",
                        "ground_truth.ply",
                        "aligned_points.ply",
                        "config.yaml",
                        "initial_points.ply",
                    },
                    "summarise": {
                        "metrics.csv",
                        "config.yaml",
                        "provenance.json",
                        "evaluation.json",
                    },
                    # with aligned_points.ply present, figures draws it, not points.ply
                    "figures": {
                        "metrics.csv",
                        "samples.npz",
                        "test_poses.npz",
                        "ground_truth.ply",
                        "aligned_points.ply",
                    },
                }[cmd]
                p.cli(
                    f"{cmd} with corrupt {name} {content[:12]!r}",
                    argv(run),
                    expect=2 if name in reads else 0,
                )
    run = make_fake_run(p.work / "runev")
    aligned = (run / "aligned_points.ply").read_bytes()
    (run / "dir.json").mkdir()
    p.cli(
        "evaluate --out a folder",
        ["evaluate", run, "--out", run / "dir.json"],
        check=lambda: (run / "aligned_points.ply").read_bytes() == aligned,
    )
    p.cli("evaluate missing run", ["evaluate", p.work / "none"])
    p.cli("evaluate tau nan", ["evaluate", run, "--tau", "nan", "--out", run / "x.json"])
    p.cli("evaluate tau -1", ["evaluate", run, "--tau", "-1", "--out", run / "x.json"])
    p.cli("viewer 0 snapshots", ["viewer", run, "--out", run / "v.html", "--max-snapshots", "0"])
    p.cli("evaluate out under a file", ["evaluate", run, "--out", run / "points.ply" / "e.json"])


def _tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes: "nothing changed" compares two of these."""
    return {str(f): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def _store(path: Path, n: int = 8, size: int = 16) -> Path:
    """A small image store (one level, sigma 2, one image per shard: a shard per image)."""
    import holly.data.imagestore as imagestore

    images = np.random.default_rng(0).random((n, size, size), dtype=np.float32) + 0.1
    shard_bytes = imagestore.SHARD_BYTES
    imagestore.SHARD_BYTES = size * size * 4  # a shard per image: one can be lost
    try:
        with imagestore.StoreWriter(path, n_images=n, height=size, width=size, sigmas=[2]) as w:
            w.write_level(2.0, [images])
            w.write_array("particle_id", np.arange(n, dtype=np.int32))
            w.commit(
                imagestore.base_attrs(
                    n_images=n, height=size, width=size, sigmas=[2.0],
                    orientation=imagestore.ORIENTATION, source={}, params={},
                )
            )  # fmt: skip
    finally:
        imagestore.SHARD_BYTES = shard_bytes
    return path


def _store_config(store: Path, **data) -> str:
    cfg = {**TINY, "data": {"source": "zarr", "store": str(store), **data}}
    return json.dumps({**cfg, "train": {**TINY["train"], "max_steps": 1}})


def nothing_lost_cases(p: Probe) -> None:
    """Issue 24: outputs aimed at inputs, --force only on what holly wrote, a second writer of a
    run folder, a lost shard, bad store attributes."""
    import subprocess

    from conftest import make_fake_run

    w = p.work / "issue24"
    run = make_fake_run(w / "run")
    h2 = make_fake_run(w / "h2", seed=1, evaluated=False)

    def same(root):
        before = _tree(root)
        return lambda: _tree(root) == before

    for name, argv in {
        "evaluate --out its ground truth": ["evaluate", run, "--out", run / "ground_truth.ply"],
        "evaluate --aligned its points": ["evaluate", run, "--aligned", run / "points.ply"],
        "evaluate --out its config": ["evaluate", run, "--out", run / "config.yaml"],
        "evaluate --out the run folder": ["evaluate", run, "--out", run],
        "evaluate --ground-truth = default --aligned": [
            "evaluate",
            run,
            "--ground-truth",
            run / "aligned_points.ply",
            "--out",
            w / "e.json",
        ],
        "compare --aligned H1 points": [
            "compare",
            run,
            h2,
            "--out",
            w / "c.json",
            "--aligned",
            run / "points.ply",
        ],
        "compare --out H2 metrics": ["compare", run, h2, "--out", h2 / "metrics.csv"],
        "compare --figure H1 samples": [
            "compare",
            run,
            h2,
            "--out",
            w / "c.json",
            "--figure",
            run / "samples.npz",
        ],
    }.items():
        p.cli(name, argv, check=same(w))
    (w / "innocent.json").symlink_to(run / "ground_truth.ply")
    p.cli(
        "evaluate --out a link to its ground truth",
        ["evaluate", run, "--out", w / "innocent.json"],
        check=same(w),
    )

    store = _store(w / "data" / "s.zarr")
    for label, out in (("store", store), ("inside", store / "run"), ("parent", store.parent)):
        p.cli(
            f"train --out its store ({label}) --force",
            ["train", "--config-json", _store_config(store), "--out", out, "--force"],
            check=same(w),
        )
    shape = w / "shaped" / "shape.csv"
    shape.parent.mkdir()
    shape.write_text("x,y,z\n0.5,0,0\n0,0.5,0\n0,0,0.5\n")
    cfg = json.dumps({**TINY, "data": {**TINY["data"], "shape": str(shape)}})
    p.cli(
        "train --out the folder of its shape",
        ["train", "--config-json", cfg, "--out", shape.parent, "--force"],
        check=same(w),
    )

    mine = w / "mine.zarr"  # a user's own OME-Zarr folder, with notes
    mine.mkdir()
    (mine / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"ome": {}}})
    )
    (mine / "notes.txt").write_text("my notes")
    src = w / "fits"
    from astropy.io import fits

    for sigma in ("2.0", "1.0"):
        (src / sigma).mkdir(parents=True)
        for i in range(2):
            fits.PrimaryHDU(np.full((8, 8), 0.5 + i, np.float32)).writeto(
                src / sigma / f"image_{i:06d}.fits"
            )
    p.cli(
        "ingest --force onto a user's OME-Zarr",
        ["ingest", src, "--out", mine, "--force"],
        check=same(w),
    )
    p.cli(
        "ingest --ome-zarr --force onto a user's OME-Zarr",
        ["ingest", src, "--out", w / "new.zarr", "--ome-zarr", mine, "--force"],
        check=same(w),
    )
    sim = json.dumps({**TINY, "data": {"particles": 4, "test_particles": 1}})
    p.cli(
        "simulate --force onto a user's OME-Zarr",
        ["simulate", "--config-json", sim, "--out", mine, "--sigmas", "2", "--force"],
        check=same(w),
    )
    notes = w / "notes"
    notes.mkdir()
    (notes / "config.yaml").write_text("my: config\n")
    (notes / "metrics.csv").write_text("a,b\n1,2\n")
    for extra in (["--force"], ["--resume", "auto"]):
        p.cli(
            f"train {extra[0]} onto a user's config.yaml",
            ["train", "--config-json", json.dumps(TINY), "--out", notes, *extra],
            check=same(w),
        )
    cwd = os.getcwd()
    for label, here in (("an empty folder", w / "empty"), ("a holly store", store)):
        here.mkdir(exist_ok=True)
        os.chdir(here)
        try:
            p.cli(
                f"ingest --out . --force in {label}",
                ["ingest", src, "--out", ".", "--force"],
                check=same(w),
            )
        finally:
            os.chdir(cwd)

    # a second writer of a run folder: one process holds the lock, every writer is refused
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from holly.run.runfolder import RunFolder\n"
            "with RunFolder(sys.argv[1]).lock('train'):\n print('held', flush=True)\n"
            " time.sleep(120)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for name, argv in {
            "evaluate": ["evaluate", run, "--out", w / "e2.json"],
            "compare": ["compare", run, h2, "--out", w / "c2.json"],
            "refine": ["refine", run, "--steps", "1"],
            "train --resume auto": [
                "train",
                "--config-json",
                json.dumps(TINY),
                "--out",
                run,
                "--resume",
                "auto",
            ],
            "train --force": ["train", "--config-json", json.dumps(TINY), "--out", run, "--force"],
        }.items():
            p.cli(f"second writer: {name} while another holds the run", argv, check=same(w))
    finally:
        holder.kill()
        holder.wait()

    # a lost shard, preloading and streaming; bad store attributes
    lost = _store(w / "lost.zarr")
    (lost / "sigma_2.00" / "c" / "3" / "0" / "0").unlink()
    for preload in (True, False):
        p.cli(
            f"train on a store with a lost shard, preload {preload}",
            [
                "train",
                "--config-json",
                _store_config(lost, preload=preload),
                "--out",
                w / f"never{preload}",
            ],
        )
    from holly.data.imagestore import ImageStore
    from holly.data.ingest import export_ome_zarr

    p.call("OME-Zarr export of a store with a lost shard", lambda: export_ome_zarr(lost, w / "o"))
    store_open = ImageStore.open(store)  # opened, then a shard goes: reads still refuse
    (store / "sigma_2.00" / "c" / "5" / "0" / "0").unlink()
    p.call(
        "streamed read of a shard lost after open", lambda: next(store_open.iter_batches(2.0, [5]))
    )
    p.call("whole-level read of a shard lost after open", lambda: store_open.load_level(2.0))
    for name, changes in {
        "sigma 0": {"levels": {"sigma_0.00": 0.0}, "sigmas": [0.0]},
        "sigma -2": {"levels": {"sigma_-2.00": -2.0}, "sigmas": [-2.0]},
        "sigmas and levels disagree": {"sigmas": [2.0, 1.0]},
        "a level without its array": {
            "levels": {"sigma_2.00": 2.0, "sigma_1.00": 1.0},
            "sigmas": [2.0, 1.0],
        },
        "n_images 0": {"n_images": 0},
    }.items():
        bad = _store(w / f"attrs_{name.replace(' ', '_')}.zarr")
        meta = json.loads((bad / "zarr.json").read_text())
        meta["attributes"]["holly"].update(changes)
        (bad / "zarr.json").write_text(json.dumps(meta))
        p.cli(
            f"store attributes: {name}",
            ["train", "--config-json", _store_config(bad), "--out", w / "never_attrs"],
        )


def training_cases(p: Probe) -> None:
    from holly.run.runfolder import RunFolder

    out = p.work / "trained"
    cfg = json.dumps(TINY)
    p.cli("train tiny", ["train", "--config-json", cfg, "--out", out], expect=0)
    before = sorted(str(x) for x in out.rglob("*"))
    other = json.dumps({**TINY, "seed": 2})
    p.cli(
        "train into another run",
        ["train", "--config-json", other, "--out", out],
        check=lambda: sorted(str(x) for x in out.rglob("*")) == before,
    )
    rf = RunFolder(out)
    for path in [rf.last_checkpoint, *[q for _, q in rf.checkpoint_files()]]:
        path.write_bytes(b"junk")
    p.cli(
        "resume, all checkpoints unreadable",
        ["train", "--config-json", cfg, "--out", out, "--resume", "auto"],
        check=lambda: rf.last_checkpoint.read_bytes() == b"junk" and rf.metrics.is_file(),
    )
    p.cli(
        "resume, another config", ["train", "--config-json", other, "--out", out, "--resume", "yes"]
    )


def data_cases(p: Probe) -> None:
    from astropy.io import fits

    src = p.work / "fits" / "run"
    rng = np.random.default_rng(0)
    for sigma in ("2.0", "1.0"):
        (src / sigma).mkdir(parents=True)
        for i in range(3):
            fits.PrimaryHDU(rng.random((8, 8), dtype=np.float32) + 0.1).writeto(
                src / sigma / f"image_{i:06d}.fits"
            )
    files = sorted(str(x) for x in src.rglob("*"))

    def intact():
        return sorted(str(x) for x in src.rglob("*")) == files

    for label, out in (("src", src), ("parent", src.parent), ("grandparent", p.work / "fits")):
        p.cli(
            f"ingest --out {label} --force", ["ingest", src, "--out", out, "--force"], check=intact
        )
    cwd = os.getcwd()
    os.chdir(src)
    try:
        p.cli("ingest --out . --force", ["ingest", src, "--out", ".", "--force"], check=intact)
    finally:
        os.chdir(cwd)
    keep = p.work / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("mine")
    p.cli(
        "ingest --force onto a non-store folder",
        ["ingest", src, "--out", keep, "--force"],
        check=lambda: (keep / "mine.txt").is_file(),
    )
    p.cli("ingest missing source", ["ingest", p.work / "nope", "--out", p.work / "s.zarr"])
    csv = p.work / "locs.csv"
    csv.write_text("x [nm],y [nm],particle\n1,2,0\n3,4,0\n")
    text = csv.read_text()
    p.cli(
        "localise --force onto its CSV",
        ["localise", csv, "--out", csv, "--sigmas", "2", "--force"],
        check=lambda: csv.read_text() == text,
    )
    p.cli(
        "localise --force onto its folder",
        ["localise", csv, "--out", p.work, "--sigmas", "2", "--force"],
        check=lambda: csv.read_text() == text,
    )
    bad = p.work / "text.csv"
    bad.write_text("x [nm],y [nm],particle\n1,two,0\n3,4,0\n")
    p.cli(
        "localise text in a column", ["localise", bad, "--out", p.work / "t.zarr", "--sigmas", "2"]
    )
    p.cli(
        "localise missing file",
        ["localise", p.work / "nope.csv", "--out", p.work / "n.zarr", "--sigmas", "2"],
    )
    # a particle whose localisations are all NaN must not shift the numbering --accepted uses
    rng = np.random.default_rng(0)
    lines = ["x [nm],y [nm],sigma [nm],particle"]
    for k in range(4):
        for x, y in rng.normal(0, 50, (40, 2)) + [5000, 3000]:
            lines.append(f"{'nan' if k == 0 else x},{'nan' if k == 0 else y},10,{k}")
    nan_csv, acc = p.work / "nanpart.csv", p.work / "acc.txt"
    nan_csv.write_text("\n".join(lines) + "\n")
    acc.write_text("2\n")
    store = p.work / "nanpart.zarr"

    def picked_particle_2():
        from holly.data.imagestore import ImageStore

        s = ImageStore.open(store)
        return s.n_images == 1 and s.attrs["source"]["n_particles_read"] == 4

    p.cli(
        "localise all-NaN particle, --accepted",
        [
            "localise",
            nan_csv,
            "--out",
            store,
            "--sigmas",
            "2",
            "--size",
            "16",
            "--perturbations",
            "1",
            "--accepted",
            acc,
            "--particle-column",
            "particle",
        ],
        expect=0,
        check=picked_particle_2,
    )
    p.cli("localise sigma 0", ["localise", csv, "--out", p.work / "z.zarr", "--sigmas", "0"])


def archive_cases(p: Probe) -> None:
    from holly.data.archive import extract

    bomb = p.work / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * (80 * 2**20))
    p.call("archive bomb", lambda: extract(bomb, p.work / "bomb_out"))
    trav = p.work / "trav.zip"
    with zipfile.ZipFile(trav, "w") as zf:
        zf.writestr("../evil.txt", "x")
    p.call("archive traversal", lambda: extract(trav, p.work / "trav_out"))
    from holly.data.zenodo import parse_record_id

    for record in ("١٢٣", "10.5281/zenodo.١٢", "https://zenodo.org/records/٤٥", "12x", "-5", ""):
        p.call(f"record id {record!r}", lambda record=record: parse_record_id(record))
    junk = p.work / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not a zip")
    p.call("archive junk", lambda: extract(junk, p.work / "junk_out"))


@contextlib.contextmanager
def patched(owner, name: str, value):
    """``owner.name = value`` while the block runs (a fault injected into holly)."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _raises(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def faults_cases(p: Probe) -> None:
    """Issue 24, the rest (no training): damaged checkpoints and run files, wrong pairs of runs,
    unreadable inputs, resource limits, outputs aimed at inputs of figures, render and fetch."""
    import errno
    import stat

    from conftest import make_fake_run

    import holly.train.trainer as train_module
    from holly.data.archive import extract, max_bytes

    w = p.work / "faults"
    run = make_fake_run(w / "run")
    tree = _tree(run)
    (run / "checkpoints" / "last.pt").unlink()
    p.cli(
        "refine a run whose checkpoints were deleted",
        ["refine", run, "--steps", "1"],
        check=lambda: (run / "points.ply").read_bytes() == tree[str(run / "points.ply")],
        says="no checkpoint",
    )
    cut = make_fake_run(w / "cut")
    (cut / "points.ply").unlink()
    p.cli(
        "refine a run interrupted in its refinement",
        ["refine", cut],
        says=f"holly train --config {cut / 'config.yaml'} --out {cut} --resume yes",
    )
    for label, other in (
        ("another point count", {"n_points": 30}),
        ("another image size", {"image_size": 32}),
    ):
        b = make_fake_run(w / f"b_{label.split()[1]}", seed=1, **other)
        p.cli(
            f"compare halves of different experiments ({label})",
            ["compare", run, b, "--out", w / "c.json"],
            check=lambda: not (w / "c.json").exists(),
            says="not runs of one experiment",
        )
    same = make_fake_run(w / "same", seed=1)
    p.cli(
        "compare a run with itself (a warning)", ["compare", same, same, "--out", w / "s.json"], 0
    )
    p.cli(
        "compare --figure x.xyz",
        ["compare", run, same, "--out", w / "c.json", "--figure", w / "x.xyz"],
        check=lambda: not (w / "c.json").exists(),
        says="unknown figure format",
    )
    flat = make_fake_run(w / "flat")
    from holly.data.pointio import write_points

    write_points(flat / "ground_truth.ply", np.zeros((30, 3)))
    p.cli(
        "evaluate against a zero-extent ground truth",
        ["evaluate", flat, "--out", w / "f.json"],
        says="one place",
    )
    nan = make_fake_run(w / "nanposes")
    poses = dict(np.load(nan / "test_poses.npz"))
    poses["rot_pred"][0] = np.nan
    np.savez(nan / "test_poses.npz", **poses)
    p.cli("evaluate NaN poses", ["evaluate", nan, "--out", w / "n.json"], says="non-finite poses")
    fake_ply = w / "image.ply"
    fake_ply.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    p.cli("a PNG named .ply", ["render", fake_ply, "--out", w / "o.png"], says="PNG image")
    p.cli(
        "render --out its input",
        ["render", same / "points.ply", "--out", same / "points.ply"],
        says="would replace the input",
    )
    p.cli(
        "figures --out the run's snapshots",
        ["figures", same, "--out", same / "snapshots"],
        says="would replace the input",
    )
    p.cli("fetch --retries -3", ["fetch", "1", "--dest", w / "d", "--retries", "-3"])
    manifest = w / "m.yaml"
    manifest.write_text("record: 1\n")
    p.cli(
        "fetch --write-manifest onto its --manifest",
        ["fetch", "--manifest", manifest, "--write-manifest", manifest],
        check=lambda: manifest.read_text() == "record: 1\n",
    )
    cfg_file = w / "c.yaml"
    cfg_file.write_text("seed: 1\n")
    p.cli(
        "--config-json value blamed on --config-json",
        [
            "train",
            "--config",
            cfg_file,
            "--config-json",
            '{"train": {"epochs": 0}}',
            "--out",
            w / "never",
        ],
        says="--config-json (merged over",
    )
    huge = w / "huge.ply"
    header = "ply\nformat ascii 1.0\nelement vertex 4\n"
    header += "".join(f"property double {c}\n" for c in "xyz") + "end_header\n"
    huge.write_text(header + "1e300 0 0\n-1e300 0 0\n0 1e300 0\n0 0 -1e300\n")
    p.cli(
        "shape at +-1e300 without fit_radius",
        [
            "train",
            "--config-json",
            json.dumps({**TINY, "data": {**TINY["data"], "shape": str(huge)}}),
            "--out",
            w / "never",
        ],
        says="outside the image frame",
    )
    big = w / "big.csv"
    big.write_text("x [nm],y [nm],particle\n1e308,2,0\n-1e308,4,0\n5,5,0\n")
    p.cli("localise +-1e308", ["localise", big, "--out", w / "big.zarr", "--sigmas", "2"])
    import h5py

    group = w / "group.hdf5"
    with h5py.File(group, "w") as f:
        f.create_group("locs")["x"] = np.arange(5.0)
    p.cli("HDF5 /locs is a group", ["localise", group, "--out", w / "g.zarr", "--sigmas", "2"])

    # damaged checkpoints (no training: holly's own checkpoint format, of a fake model)
    empty = make_fake_run(w / "empty_ckpt")
    (empty / "points.ply").unlink()
    (empty / "checkpoints" / "last.pt").write_bytes(b"")
    p.cli(
        "resume from a 0-byte last.pt names the reason",
        ["train", "--config-json", json.dumps(TINY), "--out", empty, "--resume", "yes"],
        says="0 bytes",
    )

    # resource limits
    cfg = json.dumps(TINY)
    for label, exc in (
        ("MemoryError", MemoryError()),
        ("torch: not enough memory", RuntimeError("DefaultCPUAllocator: not enough memory")),
        ("CUDA out of memory", RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")),
    ):
        with patched(train_module.Trainer, "train_step", _raises(exc)):
            p.cli(
                f"out of memory in training ({label})",
                ["train", "--config-json", cfg, "--out", w / f"oom_{label[:4]}"],
                says="lower render.height",
            )
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_tmp(root):
        return lambda: not list(root.rglob("*.tmp"))

    with patched(train_module.torch, "save", _raises(full)):
        p.cli(
            "disk full inside torch.save",
            ["train", "--config-json", cfg, "--out", w / "full"],
            check=no_tmp(w / "full"),
            says="No space left",
        )
    zpath = w / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("sub/data.txt", "x" * 3000)
    for value in ("lots", "-5GB", "2 parsecs"):
        os.environ["HOLLY_MAX_EXTRACT_BYTES"] = value
        p.call(f"HOLLY_MAX_EXTRACT_BYTES={value}", max_bytes)
    os.environ["HOLLY_MAX_EXTRACT_BYTES"] = "1000"
    p.tried += 1
    try:
        extract(zpath, w / "small")
        p.failures.append("a small extract limit: accepted")
    except HollyError as exc:
        if "0.0 GiB" in str(exc) or "1000 bytes" not in str(exc):
            p.failures.append(f"a small extract limit: unclear: {exc}")
    os.environ["HOLLY_MAX_EXTRACT_BYTES"] = "2GB"
    p.tried += 1
    old = os.umask(0o022)
    try:
        extract(zpath, w / "perm")
        modes = {stat.S_IMODE(d.stat().st_mode) for d in (w / "perm", w / "perm" / "sub")}
        if modes != {0o755}:
            p.failures.append(f"unpacked folders (HOLLY_MAX_EXTRACT_BYTES=2GB): modes {modes}")
    except Exception:  # noqa: BLE001
        p.failures.append(f"HOLLY_MAX_EXTRACT_BYTES=2GB: {traceback.format_exc(limit=2)}")
    finally:
        os.umask(old)
        del os.environ["HOLLY_MAX_EXTRACT_BYTES"]


# A tiny run with a refinement stage: 6 amortised steps + 4 refinement steps, a checkpoint and a
# snapshot every 2 steps.
TINY_REFINE = {
    **TINY,
    "model": {"num_points": 8, "pose_hypotheses": 2},
    "train": {**TINY["train"], "epochs": 3, "checkpoint_every": 2, "snapshot_every": 2},
    "refine": {
        "steps": 4,
        "images": 8,
        "batch_size": 8,
        "table_rotations": 8,
        "search_rotations": 8,
        "ladder_steps": 1,
        "symmetries": 2,
    },
}


def _canonical(obj):
    """A checkpoint's state as plain comparable values: tensors as (dtype, shape, bytes)."""
    if hasattr(obj, "numpy") and hasattr(obj, "dtype"):
        return (str(obj.dtype), tuple(obj.shape), obj.detach().cpu().numpy().tobytes())
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj if obj == obj else "nan"


def _run_files(root: Path) -> dict:
    """What must be the same after a resume: every file's bytes, except provenance (times),
    metrics without their timing columns, npz and checkpoints by their arrays."""
    import csv

    import torch

    out = {}
    for f in sorted(root.rglob("*")):
        name = str(f.relative_to(root))
        if not f.is_file() or f.name == "provenance.json":
            continue
        if f.suffix == ".pt":
            out[name] = _canonical(torch.load(f, weights_only=True))
        elif f.suffix == ".npz":
            with np.load(f) as z:
                out[name] = {k: z[k].tobytes() for k in z.files}
        elif f.name == "metrics.csv":
            rows = csv.DictReader(io.StringIO(f.read_text()))
            timing = ("images_per_s", "elapsed_s")
            out[name] = [{k: v for k, v in r.items() if k not in timing} for r in rows]
        else:
            out[name] = f.read_bytes()
    return out


def resume_cases(p: Probe) -> None:
    """Issue 24: a run interrupted at every stage and resumed ends with the files of an
    uninterrupted run; a finished run resumed is untouched; an interrupted refine, evaluate or
    compare leaves nothing partial and a rerun works; damaged checkpoints fall back or stop."""
    import torch

    import holly.commands.compare as compare_command
    import holly.commands.evaluate as evaluate_command
    import holly.train.trainer as train_module
    from holly.run.runfolder import RunFolder

    w = p.work / "resume"
    cfg = json.dumps(TINY_REFINE)
    full = w / "full"
    p.cli("resume: the uninterrupted run", ["train", "--config-json", cfg, "--out", full], 0)
    reference = _run_files(full)
    Trainer = train_module.Trainer
    save = Trainer.save_checkpoint

    def stop_after_checkpoint(step):
        def hook(self):
            save(self)
            if self.step == step:
                raise KeyboardInterrupt

        return hook

    stages = {
        f"after the checkpoint of step {k}": (Trainer, "save_checkpoint", stop_after_checkpoint(k))
        for k in (2, 4, 6, 8, 10)  # 6: amortised phase done; 8: refining; 10: only final files
    }
    stages["while writing the final files"] = (
        RunFolder,
        "write_samples",
        _raises(KeyboardInterrupt),
    )
    for k, (label, (owner, name, hook)) in enumerate(stages.items()):
        out = w / f"cut{k}"
        with patched(owner, name, hook):
            p.cli(
                f"resume: interrupted {label}", ["train", "--config-json", cfg, "--out", out], 130
            )
        (out / "checkpoints" / ".last.pt.k9x_ab12.tmp").write_bytes(b"partial")  # kill -9
        p.cli(
            f"resume: interrupted {label}, resumed: the same files",
            ["train", "--config-json", cfg, "--out", out, "--resume", "yes"],
            0,
            check=lambda out=out: _run_files(out) == reference,
        )

    def untouched(root):
        before = {str(f): (f.read_bytes(), f.stat().st_mtime_ns) for f in root.rglob("*")
                  if f.is_file()}  # fmt: skip
        return lambda: (
            before
            == {
                str(f): (f.read_bytes(), f.stat().st_mtime_ns)
                for f in root.rglob("*")
                if f.is_file()
            }
        )

    for mode in ("yes", "auto"):
        p.cli(
            f"resume: a finished run, --resume {mode}: untouched",
            ["train", "--config-json", cfg, "--out", full, "--resume", mode],
            0,
            check=untouched(full),
        )

    # an interrupted refine, then the command its message names
    ref = w / "refined"
    plain = json.dumps({**TINY_REFINE, "refine": {**TINY_REFINE["refine"], "steps": 0}})
    p.cli("refine: a finished run to refine", ["train", "--config-json", plain, "--out", ref], 0)
    with patched(Trainer, "refine_step", _raises(KeyboardInterrupt)):
        p.cli("refine: interrupted", ["refine", ref, "--steps", "2"], 130)
    p.cli("refine: rerun after the interruption", ["refine", ref], says="--resume yes")
    p.cli(
        "refine: the command the message names",
        ["train", "--config", ref / "config.yaml", "--out", ref, "--resume", "yes"],
        0,
        check=lambda: (ref / "points.ply").is_file(),
    )
    # interrupted evaluate and compare: nothing partial, a rerun works
    with patched(evaluate_command, "write_evaluation", _raises(KeyboardInterrupt)):
        p.cli("evaluate: interrupted", ["evaluate", full], 130)
    p.cli(
        "evaluate: rerun after the interruption",
        ["evaluate", full],
        0,
        check=lambda: RunFolder(full).read_evaluation().get("n_points") == 8,
    )
    other = w / "other"
    p.cli(
        "compare: the second run",
        ["train", "--config-json", json.dumps({**TINY_REFINE, "seed": 2}), "--out", other],
        0,
    )
    out = w / "halfsets.json"
    with patched(compare_command, "write_halfsets", _raises(KeyboardInterrupt)):
        p.cli("compare: interrupted", ["compare", full, other, "--out", out], 130)
    p.cli(
        "compare: rerun after the interruption",
        ["compare", full, other, "--out", out],
        0,
        check=lambda: json.loads(out.read_text())["n_points"] == [8, 8],
    )

    # damaged checkpoints of a real run: one that does not fit falls back, none: one error
    bad = w / "damaged"
    short = {**TINY_REFINE, "train": {**TINY_REFINE["train"], "max_steps": 4}}
    short = json.dumps({**short, "refine": {**TINY_REFINE["refine"], "steps": 0}})
    p.cli("checkpoints: a short run", ["train", "--config-json", short, "--out", bad], 0)
    rf = RunFolder(bad)

    def misfit(path):
        state = torch.load(path, weights_only=True)
        state["model"]["points"] = torch.zeros(3, 3)
        torch.save(state, path)

    misfit(rf.last_checkpoint)
    p.cli(
        "checkpoints: last.pt does not fit the model, step_*.pt does",
        ["train", "--config-json", cfg, "--out", bad, "--resume", "yes"],
        0,
        check=lambda: (rf.checkpoints / "unreadable" / "last.pt").is_file(),
    )
    for _, path in rf.checkpoint_files():
        misfit(path)
    misfit(rf.last_checkpoint)
    rf.points.unlink()
    p.cli(
        "checkpoints: none fits the model",
        ["train", "--config-json", cfg, "--out", bad, "--resume", "yes"],
        says="does not fit the model",
    )
    p.cli(
        "refine: no checkpoint fits",
        ["refine", bad],
        says="--resume yes",
    )


def plan_cases(p: Probe) -> None:
    from holly.plan import apply_base, plan

    tiny = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    tiny.pop("base")

    def bad(edit):
        cfg = copy.deepcopy(tiny)
        edit(cfg)
        return lambda: plan(cfg)

    edits = {
        "NaN lr": lambda c: c["defaults"]["train"].update(lr=math.nan),
        "inf tau": lambda c: c.update(evaluation={"tau": math.inf}),
        "summary.csv name": lambda c: c["experiments"][0].update(name="summary.csv"),
        "report.html name": lambda c: c["experiments"][0].update(name="report.html"),
        "batch > data": lambda c: c["defaults"]["train"].update(batch_size=10_000),
        "sigma 0": lambda c: c["defaults"]["sigma"].update(values=[1.0, 0.0]),
        "sigma file missing": lambda c: c["defaults"]["sigma"].update(values="none.csv"),
        "unknown shape": lambda c: c["experiments"][0]["data"].update(shape="blob"),
        "missing shape file": lambda c: c["experiments"][0]["data"].update(shape="x/none.ply"),
        "duplicate name": lambda c: c["experiments"].append(copy.deepcopy(c["experiments"][0])),
        "missing store": lambda c: c["experiments"][0]["data"].update(
            source="zarr", store="n.zarr"
        ),
        "unknown published": lambda c: c.update(published={"nope": "x.ply"}),
    }
    for name, edit in edits.items():
        p.call(f"plan {name}", bad(edit))
    p.call("base unknown", lambda: apply_base({"base": "tuned", "experiments": []}))


def main_probe(argv: list[str]) -> int:
    quick = "--quick" in argv
    with tempfile.TemporaryDirectory(prefix="holly-probe-") as tmp:
        probe = Probe(Path(tmp))
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        groups = (config_cases, config_file_cases, plan_cases, archive_cases, data_cases)
        for group in (*groups, nothing_lost_cases, faults_cases):
            group(probe)
        run_folder_cases(probe, quick)
        if not quick:
            training_cases(probe)
            resume_cases(probe)
    for failure in probe.failures:
        print("NOT WELL:", failure)
    well = probe.tried - len(probe.failures)
    print(f"bad inputs tried: {probe.tried}; ended well: {well}; not well: {len(probe.failures)}")
    return 0 if not probe.failures else 1


if __name__ == "__main__":
    sys.exit(main_probe(sys.argv[1:]))
