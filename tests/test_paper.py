"""config/paper.yaml: the paper's experiments planned offline, and the same DAG run end to end,
scaled down, against the loopback Zenodo stand-in serving small archives shaped like the three
records (the HOLLy release zip, the CEP152 FITS tree, the published results).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, job_counts
from zenodo_server import ZenodoStandIn

from holly.data.shapes import builtin_shape

PAPER = ROOT / "config" / "paper.yaml"
BIN = str(Path(sys.executable).parent)  # the `holly` script of this environment
BUNNIES = ["bunny-baseline", "bunny-dropout", "bunny-scatter", "bunny-noise"]
EXPERIMENTS = [*BUNNIES, "teapot", "cep152"]
UNREACHABLE = "http://127.0.0.1:9/api"  # the discard port: nothing answers there


def snakemake(*args, cwd: Path, api: str = UNREACHABLE, timeout: int = 600):
    env = {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "HOLLY_ZENODO_API": api,
    }
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    cmd += ["--directory", str(cwd), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def train_configs(output: str) -> dict[str, dict]:
    """``experiment -> --config-json`` of every planned train job (dry run with -p)."""
    configs = {}
    for m in re.finditer(r"holly train --config-json '(\{.*?\})' --out (\S+)", output):
        out = Path(m.group(2))
        if out.parent.name != "halves":  # the half-set runs of real-data experiments
            configs[out.name] = json.loads(m.group(1))
    return configs


# ---------------------------------------------------------------- the plan, offline


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("paper-plan")
    proc = snakemake("-n", "-p", "--configfile", str(PAPER), cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc.stdout + proc.stderr


def test_paper_dry_run_lists_exactly_the_papers_experiments(paper_plan):
    work, out = paper_plan
    assert job_counts(out) == {
        "fetch": 3,
        "pick": 3,
        "ingest": 1,
        "train": 6,
        # half-set validation is on by default for the real-data experiment (cep152)
        "train_half": 2,
        "compare_halves": 1,
        "evaluate": 6,
        "vs_published": 1,
        "figures": 6,
        "evolution": 6,
        "published_figure": 1,
        "viewer": 6,
        "summarise": 1,
        "report": 1,
        "all": 1,
    }
    assert sorted(train_configs(out)) == sorted(EXPERIMENTS)
    assert "results/paper/summary.csv" in out and "results/paper/cep152/vs_published.json" in out
    # planning touched nothing: no downloads, no results, no logs
    assert not any(p.name != ".snakemake" for p in work.iterdir())


def test_paper_settings_follow_the_run_scripts(paper_plan):
    configs = train_configs(paper_plan[1])
    for name in BUNNIES:
        c = configs[name]
        assert c["variant"] == "paper" and c["data"]["shape"] == "resources/shapes/bunny.obj"
        assert (c["data"]["particles"], c["data"]["augment"]) == (2000, 20)
        assert c["model"]["num_points"] == 350 and c["sigma"]["values"] == "bunny"
        assert (c["train"]["epochs"], c["train"]["batch_size"]) == (40, 32)
        assert "schedule" not in c["sigma"] and "lr" not in c["train"]  # the variant's
    assert configs["bunny-baseline"]["data"]["test_particles"] == 20
    assert configs["bunny-dropout"]["data"]["dropout"] == 0.1
    assert configs["bunny-scatter"]["data"]["wobble"] == 0.03
    noise = configs["bunny-noise"]["data"]
    assert (noise["wobble"], noise["spawn_copies"], noise["spawn_rate"]) == (0.06, 4, 0.3)
    assert configs["teapot"]["model"]["num_points"] == 230
    cep = configs["cep152"]
    assert cep["data"] == {
        "source": "zarr",
        "store": "resources/cep152.zarr",
        "test_fraction": 0.01,
    }
    assert cep["model"]["num_points"] == 250 and cep["sigma"]["values"] == "cep"
    assert cep["sigma"]["schedule"] == "epoch" and cep["train"]["epochs"] == 40

    from holly.config import from_dict

    resolved = from_dict(configs["bunny-noise"])
    assert resolved.loss.normalise == "batch" and resolved.loss.kind == "masked_l1"
    assert resolved.loss.mask_threshold == 1e-4 and resolved.sigma.schedule == "geometric"
    assert resolved.model.sigma_head == "softplus" and resolved.points_lr == 4e-4


def test_downloads_target_fetches_only(tmp_path):
    proc = snakemake("downloads", "-n", "--configfile", str(PAPER), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == {"fetch": 3, "downloads": 1}


def test_paper_latest_variant_is_optional(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["variants"] = ["paper", "latest"]
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "-p", "--configfile", "both.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = train_configs(proc.stdout)
    assert sorted(configs) == sorted(EXPERIMENTS + [f"{n}-latest" for n in EXPERIMENTS])
    assert configs["bunny-noise-latest"]["variant"] == "latest"
    assert job_counts(proc.stdout)["vs_published"] == 2  # cep152 and cep152-latest


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["files"]["shapes/bunny.obj"].update(record="nope"), r"names record 'nope'"),
        (lambda c: c["stores"]["cep152"].update(record="nope"), r"names record 'nope'"),
        (lambda c: c["published"].update(bunny="x.ply"), r"published: 'bunny' is not an"),
        (
            lambda c: c["experiments"][5]["data"].update(store="resources/other.zarr"),
            r"image store 'resources/other.zarr' does not exist",
        ),
        (lambda c: c.update(results="/abs"), r"does not match"),
    ],
)
def test_paper_config_errors_name_the_key(tmp_path, edit, message):
    cfg = yaml.safe_load(PAPER.read_text())
    edit(cfg)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", "bad.yaml", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(message, out), out[-2000:]


# ---------------------------------------------------------------- the same DAG, tiny, on CPU


def _obj(points: np.ndarray) -> str:
    return "# test model\n" + "".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in points)


def _ply(points: np.ndarray) -> str:
    head = f"ply\nformat ascii 1.0\nelement vertex {len(points)}\n"
    head += "property float x\nproperty float y\nproperty float z\nend_header\n"
    return head + "".join(f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in points)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fixture_records(rng: np.random.Generator) -> dict[str, dict[str, bytes]]:
    """Small archives shaped like Zenodo records 5608206, 4751057 and 4836173."""
    from astropy.io import fits

    from holly.method.render import render

    # 5608206: GitHub release zip of the repository; the OBJs under objs/ in a top folder.
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        top = "OniDaito-HOLLy-0a1b2c3/"
        zf.writestr(top + "README.md", "HOLLy\n")
        zf.writestr(top + "objs/bunny_large.obj", _obj(1.2 * builtin_shape("tetrapod")[::4]))
        zf.writestr(top + "objs/bunny_detailed.obj", _obj(rng.normal(size=(40, 3))))
        zf.writestr(top + "objs/teapot_large.obj", _obj(1.2 * builtin_shape("helix")[::4]))
    # 4751057: one folder per sigma of image_%06d.fits, 4 particles x 10 rotated copies.
    import torch

    cloud = torch.as_tensor(0.8 * builtin_shape("cep152")[::6], dtype=torch.float32)
    angles = torch.as_tensor(rng.uniform(-np.pi, np.pi, 40), dtype=torch.float32)
    c, s = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(40, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    members = {}
    for folder, sigma in (("10", 10.0), ("5.0", 5.0), ("3.28", 3.28)):
        images = render(cloud, rot, torch.zeros(40, 2), sigma, 32, 32).numpy()
        for i, image in enumerate(images):
            out = io.BytesIO()
            fits.PrimaryHDU(np.flipud(image).astype(np.float32)).writeto(out)
            members[f"paper/{folder}/image_{i:06d}.fits"] = out.getvalue()
    # 4836173: the published run's output, with the final cloud as last.ply.
    published = _tar_gz(
        {
            "cep152_run/plys/shape_e039_s01200.ply": _ply(rng.normal(size=(30, 3))).encode(),
            "cep152_run/last.ply": _ply(0.8 * builtin_shape("cep152")[::5]).encode(),
        }
    )
    return {
        "5608206": {"OniDaito/HOLLy-v1.2.zip": zbuf.getvalue()},
        "4751057": {"cep152_paper.tar.gz": _tar_gz(members), "md5sums.txt": b"see record\n"},
        "4836173": {"holly_cep152_results.tar.gz": published},
    }


def tiny_paper_config() -> dict:
    """config/paper.yaml with every size scaled down; records, stores, experiments as they are."""
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["defaults"]["device"] = "cpu"
    cfg["defaults"]["render"] = {"height": 32, "width": 32}
    cfg["defaults"]["train"] = {
        "epochs": 2,
        "batch_size": 8,
        "max_steps": 6,
        "log_every": 2,
        "test_images": 8,
        "snapshot_every": 2,
        "checkpoint_every": 100,
        "threads": 1,
    }
    for exp in cfg["experiments"]:
        exp["model"] = {**exp.get("model", {}), "num_points": 20}
        exp.setdefault("train", {}).pop("batch_size", None)
        exp["train"].pop("epochs", None)
        if exp["data"]["source"] == "simulated":
            exp["data"].update(particles=12, augment=2, test_particles=2, max_trans=0.1)
        else:
            exp["data"]["test_fraction"] = 0.25  # one of the 4 particles
    cfg["figures"].update(dpi=40, montage_images=2, evolution_snapshots=3)
    cfg["viewer"]["max_snapshots"] = 4
    cfg["report"]["title"] = "holly paper DAG, scaled down"
    return cfg


@pytest.fixture(scope="module")
def paper_tiny(tmp_path_factory):
    if importlib_missing("holly.commands.train"):
        pytest.skip("holly train not available")
    work = tmp_path_factory.mktemp("paper-tiny")
    (work / "paper_tiny.yaml").write_text(yaml.safe_dump(tiny_paper_config(), sort_keys=False))
    records = fixture_records(np.random.default_rng(0))
    # The FITS archive drops once mid-transfer: holly fetch resumes it with a Range request.
    server = ZenodoStandIn(
        records, drop_after={"cep152_paper.tar.gz": 5000}, max_requests=1000, lifetime=900
    )
    with server:
        proc = snakemake(
            "--cores", "2", "--configfile", "paper_tiny.yaml", "--show-failed-logs",
            cwd=work, api=server.api,
        )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return work, server


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


@pytest.mark.workflow
def test_paper_tiny_downloads_and_preprocessing(paper_tiny):
    work, server = paper_tiny
    res = work / "resources"
    # the release zip's key holds a "/": saved under its last part, unpacked beside it
    assert (res / "zenodo" / "holly-software" / "HOLLy-v1.2.zip").is_file()
    done = json.loads((res / "zenodo" / "holly-software.fetched.json").read_text())
    assert done["record"] == "5608206" and done["files"][0]["key"] == "OniDaito/HOLLy-v1.2.zip"
    images = json.loads((res / "zenodo" / "cep152-images.fetched.json").read_text())
    assert images["record"] == "4751057" and "cep152_paper.tar.gz" in images["extracted"]
    assert not list(res.rglob("*.part"))
    ranges = [r.range for r in server.file_requests("cep152_paper.tar.gz")]
    assert ranges[0] is None and ranges[1].startswith("bytes=5000-")  # resumed, not restarted
    bunny = (res / "shapes" / "bunny.obj").read_text()
    assert bunny == _obj(1.2 * builtin_shape("tetrapod")[::4])
    assert (res / "published" / "cep152.ply").read_text().startswith("ply")

    from holly.data.imagestore import ImageStore

    store = ImageStore.open(res / "cep152.zarr")
    assert store.sigmas == [10.0, 5.0, 3.28] and (store.height, store.width) == (32, 32)
    assert len(store.particle_ids) == 40 and len(set(store.particle_ids.tolist())) == 4


@pytest.mark.workflow
def test_paper_tiny_summary_and_comparison(paper_tiny):
    work, _ = paper_tiny
    out = work / "results" / "paper"
    df = pd.read_csv(out / "summary.csv")
    assert list(df["experiment"]) == EXPERIMENTS
    sim = df[df["experiment"] != "cep152"]
    for col in ("chamfer", "hausdorff95", "fscore", "pose_error_median_deg"):
        assert sim[col].notna().all(), col
    assert sim["random_init_chamfer"].notna().all()
    assert df["wall_seconds"].notna().all() and (df["wall_seconds"] >= 0).all()
    assert df["device"].str.startswith("cpu").all()
    cep = df[df["experiment"] == "cep152"].iloc[0]
    assert pd.isna(cep["chamfer"]) and cep["shape"] == "resources/cep152.zarr"
    assert cep["final_test_loss"] > 0  # the held-out fit, real data's only measure
    assert cep["published_chamfer"] > 0 and cep["published_random_init_chamfer"] > 0
    assert cep["published_n_points"] == len(builtin_shape("cep152")[::5])
    vs = json.loads((out / "cep152" / "vs_published.json").read_text())
    assert vs["ground_truth"] == "resources/published/cep152.ply"
    # the comparison did not touch the run's own (absent) alignment
    assert not (out / "cep152" / "aligned_points.ply").exists()
    evaluation = json.loads((out / "cep152" / "evaluation.json").read_text())
    assert evaluation["reconstruction"] is None and evaluation["held_out_fit"]["test_loss"] > 0


@pytest.mark.workflow
def test_paper_tiny_figures_and_report(paper_tiny):
    work, _ = paper_tiny
    out = work / "results" / "paper"
    for name in EXPERIMENTS:
        for fig in ("loss", "sigma", "montage", "views", "pose_error", "evolution"):
            assert (out / name / "figures" / f"{fig}.png").stat().st_size > 0, (name, fig)
    assert (out / "cep152" / "figures" / "vs_published.png").is_file()
    assert not (out / "teapot" / "figures" / "vs_published.png").exists()
    html = (out / "report.html").read_text()
    assert "holly paper DAG, scaled down" in html
    # one viewer per run, and cep152's two half-set clouds over each other
    assert html.count('class="holly-viewer"') == len(EXPERIMENTS) + 1
    # 5 standard figures + evolution per run, the comparison chart, cep152 vs published, and
    # cep152's half-set FSC curve
    assert html.count('src="data:image/png;base64,') == 6 * len(EXPERIMENTS) + 1 + 1 + 1
    assert "Compared with the published reconstruction" in html
    assert "Chamfer to published" in html
    # logs and benchmarks mirror the results folder; downloads are logged once
    assert (work / "logs" / "paper" / "cep152" / "train.log").is_file()
    assert (work / "benchmarks" / "paper" / "bunny-noise" / "train.tsv").is_file()
    assert (work / "logs" / "zenodo" / "cep152-images.log").is_file()
    assert (work / "benchmarks" / "resources" / "cep152.ingest.tsv").is_file()


@pytest.mark.workflow
def test_paper_tiny_rerun_is_a_no_op(paper_tiny):
    work, _ = paper_tiny
    proc = snakemake("-n", "--configfile", "paper_tiny.yaml", cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
