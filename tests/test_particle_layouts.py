"""Published particle layouts: the TU Delft particle-fusion MATLAB file (``particles{i}`` with
``points``/``sigma`` or ``coords``), JRMPC's ``Superparticle{i}``, and Picasso files with
several group columns. Synthetic v5 and v7.3 files written here test the readers in any clone;
the real files in ``../shared/realdata/particles`` are read where present."""

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from matlab73 import MatFile
from scipy.io import savemat

import holly.cli
from holly.data.imagestore import ImageStore
from holly.data.localisations import localise
from holly.data.locformats import MAX_ERROR, detect_format, read_localisations, supported
from holly.errors import HollyError

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "particles"
PX = 130.0  # nm per camera pixel of the synthetic files
COUNTS = [40, 48, 56]


def particles_3d(seed=0):
    """Three rings (camera pixels) with z, sigma_xy and sigma_z per localisation."""
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(COUNTS):
        t = 2 * np.pi * np.arange(n) / n
        r = (60.0 + 30 * k) / PX
        xyz = np.stack([r * np.cos(t) + k, r * np.sin(t) - k, rng.normal(0, 0.2, n)], axis=1)
        out.append((xyz, rng.uniform(0.01, 0.05, n), rng.uniform(0.05, 0.2, n)))
    return out


def tud_elements(layout, parts):
    """One struct per particle as the TU Delft repositories write them."""
    elements = []
    for xyz, sxy, sz in parts:
        if layout == "points2":
            elements.append({"points": xyz[:, :2], "sigma": sxy[:, None]})
        elif layout == "points3":
            elements.append({"points": xyz, "sigma": np.stack([sxy, sz], axis=1)})
        else:  # coords: x y z frame sigma_xy photons ... sigma_z (N x 10)
            c = np.zeros((len(xyz), 10))
            c[:, :3], c[:, 3], c[:, 4], c[:, 9] = xyz, 7.0, sxy, sz
            elements.append({"coords": c, "param": np.arange(7.0)[None, :]})
    return elements


def write_layout(path, layout, version, parts):
    if layout == "superparticle":  # JRMPC: dims x N, nm
        value = [(xyz * PX).T for xyz, _, _ in parts]
        name = "Superparticle"
    else:
        value = tud_elements(layout, parts)
        name = "particles"
    if version == "v5":
        cell = np.empty((1, len(value)), dtype=object)
        for k, v in enumerate(value):
            cell[0, k] = v
        savemat(path, {name: cell})
    else:
        with MatFile(path) as m:
            m.put(m.f, name, value)


LAYOUTS = ["points2", "points3", "coords", "superparticle"]


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_read_with_z_and_sigmas(tmp_path, layout, version):
    parts = particles_3d()
    path = tmp_path / "particles.mat"
    write_layout(path, layout, version, parts)
    fmt = "superparticle-mat" if layout == "superparticle" else "tud-mat"
    assert detect_format(path) == fmt
    pixel = None if layout == "superparticle" else PX
    p, _ = read_localisations(path, pixel_size=pixel)
    assert [len(x) for x in p.xy] == COUNTS and p.labels == [0, 1, 2]
    scale = PX if layout == "superparticle" else 1.0  # superparticle in nm, TU Delft in px
    assert p.nm_per_unit == pytest.approx(1.0 if layout == "superparticle" else PX)
    for (xyz, sxy, sz), xy, k in zip(parts, p.xy, range(3), strict=True):
        assert np.allclose(xy, xyz[:, :2] * scale)
        if layout != "points2":
            assert np.allclose(p.extra["z"][k], xyz[:, 2] * scale)
        if layout != "superparticle":
            assert np.allclose(p.extra["sigma_xy"][k], sxy)
        if layout in ("points3", "coords"):
            assert np.allclose(p.extra["sigma_z"][k], sz)
    expected = {
        "points2": {"sigma_xy"},
        "points3": {"z", "sigma_xy", "sigma_z"},
        "coords": {"z", "sigma_xy", "sigma_z"},
        "superparticle": {"z"},
    }[layout]
    assert set(p.extra) == expected
    assert p.source["matlab"] == version


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_camera_pixels_need_the_pixel_size_never_assumed(tmp_path, version):
    path = tmp_path / "tud.mat"
    write_layout(path, "points2", version, particles_3d())
    with pytest.raises(HollyError) as err:
        read_localisations(path)
    line = str(err.value)
    assert "tud.mat" in line and "--pixel-size" in line and "130 nm" in line
    assert len(line) <= MAX_ERROR and "\n" not in line
    with pytest.raises(HollyError, match="--particle-column does not apply to tud-mat"):
        read_localisations(path, pixel_size=PX, particle_column="group")


def test_store_keeps_z_and_its_precision(tmp_path):
    parts = particles_3d()
    path = tmp_path / "npc.mat"
    write_layout(path, "coords", "v7.3", parts)
    r = localise(path, tmp_path / "s.zarr", [1.0], size=32, perturbations=2, pixel_size=PX)
    store = ImageStore.open(tmp_path / "s.zarr")
    assert r.n_selected == 3 and len(np.unique(store.particle_ids)) == 3
    assert store.nm_per_px == pytest.approx(PX / r.pixels_per_unit)
    table = store.attrs["localisations"]
    assert table["n"] == sum(COUNTS) and table["rendered"] == "xy projection"
    assert set(table["columns"]) == {"xy", "z", "sigma_xy", "sigma_z"}
    ids = store.array("localisation_particle")
    assert np.array_equal(ids, np.repeat([0, 1, 2], COUNTS))
    assert np.allclose(
        store.array("localisation_z"), np.concatenate([x[:, 2] for x, _, _ in parts])
    )
    assert np.allclose(
        store.array("localisation_sigma_z"), np.concatenate([s for _, _, s in parts])
    )
    assert np.allclose(
        store.array("localisation_xy"), np.concatenate([x[:, :2] for x, _, _ in parts])
    )


def test_cli_end_to_end_and_the_pixel_size_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(holly.cli, "COMMANDS", {"localise": "localise"})
    path = tmp_path / "tud.mat"
    write_layout(path, "points2", "v5", particles_3d())
    args = ["localise", str(path), "--sigmas", "1", "--size", "32", "--perturbations", "2"]
    assert holly.cli.main([*args, "--out", str(tmp_path / "a.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pass --pixel-size NM" in err and "130 nm" in err
    assert not (tmp_path / "a.zarr").exists()
    assert holly.cli.main([*args, "--out", str(tmp_path / "b.zarr"), "--pixel-size", "130"]) == 0
    store = ImageStore.open(tmp_path / "b.zarr")
    assert len(np.unique(store.particle_ids)) == 3 and store.n_images == 6
    assert store.attrs["source"]["format"] == "tud-mat"


def test_other_matlab_files_are_refused_listing_the_formats(tmp_path):
    savemat(tmp_path / "model.mat", {"NPCModel": np.ones((32, 3))})
    with MatFile(tmp_path / "other.mat") as m:
        m.put(m.f, "results", {"M": np.ones((3, 8))})
    write_layout(tmp_path / "tud.mat", "coords", "v5", particles_3d())
    cases = [("model.mat", "auto"), ("other.mat", "auto"), ("other.mat", "tud-mat")]
    cases += [("tud.mat", "smap-mat"), ("model.mat", "superparticle-mat")]
    for name, fmt in cases:
        with pytest.raises(HollyError) as err:
            read_localisations(tmp_path / name, fmt, pixel_size=PX)
        line = str(err.value)
        assert name in line and len(line) <= MAX_ERROR and "\n" not in line, line
        assert line.endswith(f"holly reads: {supported()}"), line


# ---------------------------------------------------------------------------- Picasso groups
def write_resi(path, lp=True):
    """20 origami picks (group_input), each 4 corner sites 40 nm apart, 30 localisations per
    site (sigma 3 nm); group = the corner sub-cluster, as after RESI's re-clustering."""
    rng = np.random.default_rng(3)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 20.0 / PX
    xy, pick, site = [], [], []
    for k in range(20):
        centre = rng.uniform(10, 200, 2)
        for c in range(4):
            xy.append(centre + corners[c] + rng.normal(0, 3.0 / PX, (30, 2)))
            pick += [k] * 30
            site += [4 * k + c] * 30
    xy = np.concatenate(xy)
    fields = [("frame", "u4"), ("x", "f4"), ("y", "f4")]
    fields += [("lpx", "f4"), ("lpy", "f4")] if lp else []
    fields += [("group_input", "i4"), ("group", "i4")]
    locs = np.zeros(len(xy), dtype=fields)
    locs["x"], locs["y"] = xy.T
    if lp:
        locs["lpx"] = locs["lpy"] = 3.0 / PX
    locs["group_input"], locs["group"] = pick, site
    with h5py.File(path, "w") as f:
        f.create_dataset("locs", data=locs)


@pytest.mark.parametrize("lp", [True, False])
def test_picasso_sub_clusters_warn_and_particle_column_picks_the_structure(tmp_path, caplog, lp):
    path = tmp_path / "resi.hdf5"
    write_resi(path, lp)
    with caplog.at_level(logging.WARNING):
        p, _ = read_localisations(path)
    assert len(p) == 80 and p.source["particle_column"] == "group"
    assert "mostly sub-clusters" in caplog.text
    assert "pass --particle-column group_input" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        p, _ = read_localisations(path, particle_column="group_input")
    assert len(p) == 20 and all(len(x) == 120 for x in p.xy)
    assert "sub-clusters" not in caplog.text


def test_picasso_precisions_are_kept_and_recorded_by_the_store(tmp_path):
    """lpx / lpy (camera pixels) become sigma_xy, their RMS, which `holly localise` records as
    the store's precision: what `render.data_blur: auto` trains with."""
    path = tmp_path / "resi.hdf5"
    write_resi(path, lp=True)
    with h5py.File(path, "r+") as f:
        locs = f["locs"][()]
        locs["lpy"] = 4.0 / PX  # anisotropic: the RMS of 3 and 4 nm
        del f["locs"]
        f.create_dataset("locs", data=locs)
    p, _ = read_localisations(path, particle_column="group_input", pixel_size=PX)
    rms = np.sqrt((3.0**2 + 4.0**2) / 2) / PX
    assert np.allclose(np.concatenate(p.extra["sigma_xy"]), rms, rtol=1e-6)
    r = localise(
        path,
        tmp_path / "s.zarr",
        [1.0],
        size=32,
        perturbations=2,
        pixel_size=PX,
        particle_column="group_input",
    )
    store = ImageStore.open(tmp_path / "s.zarr")
    assert store.attrs["precision"]["median_nm"] == pytest.approx(rms * PX, rel=1e-5)
    assert store.precision_px == pytest.approx(rms * r.pixels_per_unit, rel=1e-5)


# ---------------------------------------------------------------------------- the real files
REAL_FILES = {
    # file: (particles, localisations), from the folder's README
    "tud_logo_dnapaint/tud_dol30.mat": (549, 248_843),
    "tud_logo_dnapaint/tud_dol50_filtered.mat": (441, 278_378),
    "npc_nup107_simulated/data.mat": (100, 57_178),
    "tetrahedron_simulated/aniso": (100, None),
}


def real(name):
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} absent (shared real data are not in the repository)")
    return path


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_particle_files_read_with_their_particle_counts(name):
    n_particles, n_locs = REAL_FILES[name]
    p, _ = read_localisations(real(name), pixel_size=PX)
    assert len(p) == n_particles
    if n_locs is not None:
        assert sum(len(x) for x in p.xy) == n_locs
    if name.endswith("data.mat"):  # 3D, coords N x 10: z and both precisions kept
        assert set(p.extra) == {"z", "sigma_xy", "sigma_z"}
        assert sum(len(z) for z in p.extra["z"]) == n_locs


def test_real_npc_model_is_refused_naming_the_formats():
    with pytest.raises(HollyError) as err:
        read_localisations(real("npc_nup107_simulated/NPCModel.mat"), pixel_size=PX)
    line = str(err.value)
    assert "NPCModel" in line and len(line) <= MAX_ERROR and "\n" not in line
    assert line.endswith(f"holly reads: {supported()}")


def test_real_tud_file_localised_end_to_end(tmp_path, monkeypatch):
    path = real("tud_logo_dnapaint/tud_dol30.mat")
    monkeypatch.setattr(holly.cli, "COMMANDS", {"localise": "localise"})
    out = tmp_path / "tud.zarr"
    args = ["localise", str(path), "--out", str(out), "--sigmas", "1", "--size", "16"]
    args += ["--perturbations", "1", "--max-points", "20", "--pixel-size", "130"]
    assert holly.cli.main(args) == 0
    store = ImageStore.open(out)
    assert len(np.unique(store.particle_ids)) == 549
    assert store.attrs["localisations"]["n"] == 248_843
    assert store.nm_per_px is not None


def test_thunderstorm_3d_keeps_z_and_precisions_not_the_psf_sigma(tmp_path):
    import pandas as pd

    parts = particles_3d()
    xyz = np.concatenate([x for x, _, _ in parts]) * PX
    table = pd.DataFrame(
        {
            "id": np.arange(len(xyz)) + 1,
            "x [nm]": xyz[:, 0],
            "y [nm]": xyz[:, 1],
            "z [nm]": xyz[:, 2],
            "sigma [nm]": 120.0,  # the PSF width, not a precision
            "uncertainty_xy [nm]": np.concatenate([s for _, s, _ in parts]) * PX,
            "uncertainty_z [nm]": np.concatenate([s for _, _, s in parts]) * PX,
            "particle": np.repeat([0, 1, 2], COUNTS),
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False, quoting=1)
    localise(tmp_path / "t.csv", tmp_path / "s.zarr", [1.0], size=32, particle_column="particle")
    store = ImageStore.open(tmp_path / "s.zarr")
    columns = store.attrs["localisations"]["columns"]
    assert columns == {"xy": "nm", "z": "nm", "sigma_xy": "nm", "sigma_z": "nm"}
    assert np.allclose(store.array("localisation_z"), xyz[:, 2])
    assert np.allclose(store.array("localisation_sigma_xy"), table["uncertainty_xy [nm]"])


@pytest.mark.parametrize("version", ["7", "7.3"])
def test_smap_mat_keeps_its_precision(tmp_path, version):
    from test_locformats import rings, write_smap_mat

    write_smap_mat(tmp_path / "c_sml.mat", rings(), version=version)
    p, _ = read_localisations(tmp_path / "c_sml.mat", particle_column="channel")
    assert set(p.extra) == {"sigma_xy"} and p.source["extra_units"] == {"sigma_xy": "nm"}
    assert all(np.allclose(s, 8.0) for s in p.extra["sigma_xy"])


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_struct_array_and_empty_cells(tmp_path, version):
    """particles(i).points (a struct array) reads like particles{i}.points; an empty cell is an
    empty particle (dropped later with a count), and the numbering of the others stays."""
    parts = particles_3d()
    elements = tud_elements("points2", parts)
    path = tmp_path / "sa.mat"
    if version == "v5":
        arr = np.empty((1, 3), dtype=[("points", object), ("sigma", object)])
        for k, e in enumerate(elements):
            arr[0, k] = (e["points"], e["sigma"])
        savemat(path, {"particles": arr})
    else:
        with MatFile(path) as m:
            m.put(m.f, "particles", ("struct_array", elements))
    p, _ = read_localisations(path, pixel_size=PX)
    assert [len(x) for x in p.xy] == COUNTS
    assert np.allclose(p.xy[1], parts[1][0][:, :2])
    cell = np.empty((1, 3), dtype=object)
    cell[0, 0], cell[0, 1], cell[0, 2] = elements[0], np.zeros((0, 0)), elements[2]
    savemat(tmp_path / "gap.mat", {"particles": cell})
    p, _ = read_localisations(tmp_path / "gap.mat", pixel_size=PX)
    assert [len(x) for x in p.xy] == [COUNTS[0], 0, COUNTS[2]] and p.labels == [0, 1, 2]


def test_workflow_schema_lists_every_format():
    import yaml

    from holly.data.localisations import FORMATS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "enum" in node and "thunderstorm" in node["enum"]:
                found.append(node["enum"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found and all(list(e) == list(FORMATS) for e in found)
