"""holly localise: ThunderSTORM / Picasso / CEP152 .mat tables -> rendered image store."""

import h5py
import numpy as np
import pandas as pd
import pytest

import holly.cli
from holly.data.imagestore import ImageStore
from holly.data.localisations import localise, read_cep152_mat, size_cut_threshold
from holly.errors import HollyError

SIZE = 32
COUNTS = [40, 48, 56]  # multiples of 4: evenly spaced rings have centroid = bbox centre
RADII = [60.0, 90.0, 120.0]  # source units (nm)


def rings(offset=(5000.0, 3000.0)):
    """Evenly spaced rings, one per particle, at scattered positions in the field."""
    out = []
    for k, (n, r) in enumerate(zip(COUNTS, RADII, strict=True)):
        t = 2 * np.pi * np.arange(n) / n
        centre = np.array(offset) + 700.0 * k
        out.append(centre + r * np.stack([np.cos(t), np.sin(t)], axis=1))
    return out


def check_store(path, counts, perturbations, sigma=0.7):
    store = ImageStore.open(path)
    images = store.load_level(sigma)
    assert images.shape == (len(counts) * perturbations, SIZE, SIZE)
    sums = images.sum(axis=(1, 2))
    assert np.allclose(sums, np.repeat(counts, perturbations), rtol=2e-3)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for image in images:  # centred on the renderer's frame centre (W/2, H/2)
        assert abs((image * rows).sum() / image.sum() - SIZE / 2) < 0.05
        assert abs((image * cols).sum() / image.sum() - SIZE / 2) < 0.05
    return store


def write_thunderstorm(path, particles, column=True):
    frames = []
    for k, p in enumerate(particles):
        frame = pd.DataFrame(
            {
                "id": np.arange(len(p)),
                "frame": 1,
                "x [nm]": p[:, 0],
                "y [nm]": p[:, 1],
                "sigma [nm]": 100.0,
            }
        )
        if column:
            frame["particle"] = 10 + k
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)


def write_picasso(path, particles, group=True):
    fields = [("frame", "u4"), ("x", "f4"), ("y", "f4"), ("lpx", "f4"), ("lpy", "f4")]
    fields += [("group", "i4")] if group else []
    n = sum(len(p) for p in particles)
    locs = np.zeros(n, dtype=fields)
    xy = np.concatenate(particles) / 100.0  # camera pixels
    locs["x"], locs["y"] = xy[:, 0], xy[:, 1]
    if group:
        locs["group"] = np.repeat(np.arange(len(particles)), [len(p) for p in particles])
    with h5py.File(path, "w") as f:
        f.create_dataset("locs", data=locs)


def write_cep152(path, particles, extra_junk=True):
    """MATLAB v7.3 layout: a cell array of references to (8, n) datasets in #refs#."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        handles = []
        for k, p in enumerate(particles):
            data = np.zeros((8, len(p)))
            data[0], data[1] = p[:, 0], p[:, 1]
            data[2:] = 7.0  # other rows are ignored
            handles.append(refs.create_dataset(f"p{k:03d}", data=data).ref)
            if extra_junk and k == 0:  # a cell that is not a particle (not 8 rows)
                handles.append(refs.create_dataset("junk", data=np.zeros((2, 3))).ref)
        cells = f.create_dataset("Cep152_all_filtered", (1, len(handles)), dtype=h5py.ref_dtype)
        cells[0, :] = handles


@pytest.mark.parametrize("fmt", ["thunderstorm", "picasso", "cep152-mat"])
def test_each_format_renders_centred_particles(tmp_path, fmt):
    particles = rings()
    path = (
        tmp_path
        / {"thunderstorm": "locs.csv", "picasso": "locs.hdf5", "cep152-mat": "Cep152_all.mat"}[fmt]
    )
    {"thunderstorm": write_thunderstorm, "picasso": write_picasso, "cep152-mat": write_cep152}[fmt](
        path, particles
    )
    result = localise(
        path,
        tmp_path / "s.zarr",
        [2.0, 0.7],
        size=SIZE,
        margin=0.25,
        perturbations=3,
        particle_column="particle" if fmt == "thunderstorm" else None,
    )
    assert result.n_read == result.n_selected == 3
    # the widest ring reaches 0.75 of the way to the nearest frame edge
    units = RADII[2] / (100.0 if fmt == "picasso" else 1.0)
    assert result.pixels_per_unit == pytest.approx(0.75 * (SIZE / 2 - 0.5) / units, rel=1e-5)
    store = check_store(tmp_path / "s.zarr", COUNTS, 3)
    assert store.sigmas == [2.0, 0.7]
    assert np.array_equal(store.particle_ids, np.repeat([0, 1, 2], 3))
    assert store.attrs["source"]["format"] == fmt
    assert store.attrs["n_localisations"] == COUNTS


def test_whole_file_is_one_particle_without_a_particle_column(tmp_path):
    write_thunderstorm(tmp_path / "a.csv", rings()[:1], column=False)
    localise(
        tmp_path / "a.csv", tmp_path / "a.zarr", [0.7], size=SIZE, margin=0.25, perturbations=2
    )
    check_store(tmp_path / "a.zarr", COUNTS[:1], 2)
    write_picasso(tmp_path / "b.hdf5", rings()[1:2], group=False)
    localise(
        tmp_path / "b.hdf5", tmp_path / "b.zarr", [0.7], size=SIZE, margin=0.25, perturbations=2
    )
    check_store(tmp_path / "b.zarr", COUNTS[1:2], 2)


def test_folder_of_files_is_one_particle_per_file(tmp_path):
    (tmp_path / "in").mkdir()
    for k, p in enumerate(rings()):
        write_thunderstorm(tmp_path / "in" / f"particle_{k}.csv", [p], column=False)
    result = localise(
        tmp_path / "in", tmp_path / "s.zarr", [0.7], size=SIZE, margin=0.25, perturbations=1
    )
    assert result.n_read == 3
    check_store(tmp_path / "s.zarr", COUNTS, 1)


def test_orientation_and_rotation_angle(tmp_path):
    """A localisation with larger y lands lower (camera view); copies rotate as recorded."""
    heavy = np.array([[0.0, 50.0]] * 30)  # below the centre in camera coordinates
    light = np.array([[0.0, -50.0]] * 3)
    write_thunderstorm(tmp_path / "a.csv", [np.concatenate([heavy, light])], column=False)
    localise(
        tmp_path / "a.csv",
        tmp_path / "s.zarr",
        [0.7],
        size=SIZE,
        margin=0.25,
        perturbations=5,
        seed=3,
    )
    store = ImageStore.open(tmp_path / "s.zarr")
    images, angles = store.load_level(0.7), store.array("rotation_angle")
    reach = 0.75 * (SIZE / 2 - 0.5)
    for image, phi in zip(images, angles, strict=True):
        # model coordinates of the heavy cluster: (0, -reach) px, rotated by phi (+y up)
        col = SIZE / 2 + reach * np.sin(phi)
        row = SIZE / 2 + reach * np.cos(phi)
        peak = np.unravel_index(np.argmax(image), image.shape)
        assert abs(peak[0] - row) <= 0.5 and abs(peak[1] - col) <= 0.5
    phi0 = 0.0
    assert SIZE / 2 + reach * np.cos(phi0) > SIZE / 2  # unrotated: heavy cluster below centre


def test_selection_accepted_size_cut_max_points_and_seed(tmp_path):
    particles = rings() * 3 + [rings()[0][:4]]  # nine rings and a tiny tenth particle
    counts = [len(p) for p in particles]
    write_cep152(tmp_path / "c.mat", particles, extra_junk=False)
    assert size_cut_threshold(np.array(counts)) == pytest.approx(
        np.median(counts) - 2 * np.std(counts, ddof=1)
    )
    (tmp_path / "acc.txt").write_text("# hand-picked\n0\n2, 3 4 5 6 7 8\n9\n")
    kw = dict(size=SIZE, margin=0.25, perturbations=2, accepted=tmp_path / "acc.txt", max_points=30)
    localise(tmp_path / "c.mat", tmp_path / "a.zarr", [0.7], size_cut=True, seed=1, **kw)
    store = ImageStore.open(tmp_path / "a.zarr")
    assert np.array_equal(store.particle_ids, np.repeat([0, 2, 3, 4, 5, 6, 7, 8], 2))
    # particle 1 was not accepted, 9 fell to the size cut
    assert np.allclose(store.load_level(0.7).sum((1, 2)), 30, rtol=2e-3)
    localise(tmp_path / "c.mat", tmp_path / "b.zarr", [0.7], size_cut=True, seed=1, **kw)
    localise(tmp_path / "c.mat", tmp_path / "c.zarr", [0.7], size_cut=True, seed=2, **kw)
    a, b, c = (ImageStore.open(tmp_path / f"{x}.zarr").load_level(0.7) for x in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    (tmp_path / "bad.txt").write_text("0 99\n")
    with pytest.raises(HollyError, match="bad.txt: particle index 99 out of range"):
        localise(tmp_path / "c.mat", tmp_path / "d.zarr", [0.7], accepted=tmp_path / "bad.txt")


def test_cep152_reader_skips_non_particles(tmp_path):
    write_cep152(tmp_path / "c.mat", rings())
    cells = read_cep152_mat(tmp_path / "c.mat")
    assert [len(p) for p in cells.xy] == COUNTS
    assert cells.labels == [0, 2, 3]  # cell positions; the 2-row cell is not a particle
    refs = read_cep152_mat(tmp_path / "c.mat", order="refs")
    assert refs.labels == ["p000", "p001", "p002"]
    assert np.array_equal(refs.xy[1], rings()[1])


def test_bad_inputs(tmp_path):
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(HollyError, match=r"cols\.csv: cannot tell the localisation format"):
        localise(tmp_path / "cols.csv", tmp_path / "s.zarr", [1.0])
    write_thunderstorm(tmp_path / "t.csv", rings(), column=False)
    with pytest.raises(HollyError, match="no particle column 'cell'"):
        localise(tmp_path / "t.csv", tmp_path / "s.zarr", [1.0], particle_column="cell")
    (tmp_path / "x.h5").write_bytes(b"nonsense")
    with pytest.raises(HollyError, match="cannot tell the localisation format"):
        localise(tmp_path / "x.h5", tmp_path / "s.zarr", [1.0])
    with pytest.raises(HollyError, match="sigmas must be positive"):
        localise(tmp_path / "t.csv", tmp_path / "s.zarr", [1.0, -2.0])
    with pytest.raises(HollyError, match="--centre must be one of bbox, centroid, not 'mean'"):
        localise(tmp_path / "t.csv", tmp_path / "s.zarr", [1.0], centre="mean")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cols.csv", "t.csv", "x.h5"]


@pytest.fixture
def cli_only_mine(monkeypatch):
    assert holly.cli.COMMANDS["localise"] == "localise"
    monkeypatch.setattr(holly.cli, "COMMANDS", {"localise": "localise"})


def test_cli(tmp_path, capsys, cli_only_mine):
    write_picasso(tmp_path / "p.hdf5", rings())
    (tmp_path / "sigmas.csv").write_text("2.0,2.0,0.7,0.7\n")  # schedules repeat levels
    out = tmp_path / "s.zarr"
    assert (
        holly.cli.main(
            [
                "localise",
                str(tmp_path / "p.hdf5"),
                "--out",
                str(out),
                "--sigmas",
                str(tmp_path / "sigmas.csv"),
                "--size",
                str(SIZE),
                "--perturbations",
                "2",
                "--margin",
                "0.25",
            ]
        )
        == 0
    )
    assert check_store(out, COUNTS, 2).sigmas == [2.0, 0.7]
    assert (
        holly.cli.main(
            [
                "localise",
                str(tmp_path / "missing.csv"),
                "--out",
                str(tmp_path / "t.zarr"),
                "--sigmas",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.csv" in err
    assert (
        holly.cli.main(
            [
                "localise",
                str(tmp_path / "p.hdf5"),
                "--out",
                str(tmp_path / "t.zarr"),
                "--sigmas",
                "1,x",
            ]
        )
        == 2
    )
    assert "--sigmas must be" in capsys.readouterr().err


def test_same_orientation_as_ceprender_fits_after_ingest(tmp_path):
    """localise == CEPrender's recipe (row = centre + y, written flipud to FITS) + holly ingest."""
    from astropy.io import fits

    from holly.data.ingest import ingest_fits

    p = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 80.0], [10.0, 75.0]])  # asymmetric, no mirror
    write_thunderstorm(tmp_path / "a.csv", [p], column=False)
    result = localise(
        tmp_path / "a.csv", tmp_path / "loc.zarr", [1.5], size=SIZE, seed=4, perturbations=1
    )
    store = ImageStore.open(tmp_path / "loc.zarr")
    phi = float(store.array("rotation_angle")[0])
    # CEPrender in camera coordinates (y down): centre on the bounding box, scale, rotate,
    # place at the frame centre, draw normalised Gaussians with row index = y
    q = (p - (p.min(0) + p.max(0)) / 2) * result.pixels_per_unit
    c, s = np.cos(phi), np.sin(phi)  # phi turns counter-clockwise as displayed (+y up)
    x = SIZE / 2 + q[:, 0] * c + q[:, 1] * s
    y = SIZE / 2 - q[:, 0] * s + q[:, 1] * c
    rows, cols = np.mgrid[:SIZE, :SIZE]
    image = sum(
        np.exp(-((cols - xi) ** 2 + (rows - yi) ** 2) / (2 * 1.5**2))
        for xi, yi in zip(x, y, strict=True)
    ) / (2 * np.pi * 1.5**2)
    (tmp_path / "src" / "1.5").mkdir(parents=True)
    fits.PrimaryHDU(image[::-1].astype(np.float32)).writeto(
        tmp_path / "src" / "1.5" / "image_000000.fits"
    )  # CEPrender flips on write
    ingest_fits(tmp_path / "src", tmp_path / "fits.zarr")
    ingested = ImageStore.open(tmp_path / "fits.zarr").load_level(1.5)[0]
    assert np.allclose(store.load_level(1.5)[0], ingested, atol=1e-5)


def test_centroid_centring_puts_the_mean_at_the_frame_centre(tmp_path):
    """An asymmetric particle (a dense cluster and a few far localisations): --centre centroid
    puts the mean of its localisations, and so the image's intensity centroid, on the frame
    centre under every rotation; the frame scale is measured from that centre, so the farthest
    localisation still lands (1 - margin) of the way to the edge."""
    rng = np.random.default_rng(5)
    dense = rng.normal(0.0, 5.0, (60, 2))
    far = np.array([[80.0, 0.0], [70.0, 30.0], [75.0, -20.0]])
    particle = np.concatenate([dense, far]) + 3000.0
    write_thunderstorm(tmp_path / "a.csv", [particle])
    rows, cols = np.mgrid[:SIZE, :SIZE]
    offsets = {}
    for how in ("bbox", "centroid"):
        result = localise(
            tmp_path / "a.csv",
            tmp_path / f"{how}.zarr",
            [0.7],
            size=SIZE,
            perturbations=4,
            particle_column="particle",
            centre=how,
            margin=0.2,
        )
        centred = particle - (
            particle.mean(0) if how == "centroid" else (particle.min(0) + particle.max(0)) / 2
        )
        r_max = np.sqrt((centred**2).sum(1)).max()
        assert result.pixels_per_unit == pytest.approx(0.8 * (SIZE / 2 - 0.5) / r_max, rel=1e-6)
        store = ImageStore.open(tmp_path / f"{how}.zarr")
        assert store.attrs["params"]["centre"] == how
        images = store.load_level(0.7)
        assert np.allclose(images.sum((1, 2)), len(particle), rtol=2e-3)  # nothing left the frame
        offsets[how] = max(
            np.hypot(
                (im * rows).sum() / im.sum() - SIZE / 2, (im * cols).sum() / im.sum() - SIZE / 2
            )
            for im in images
        )
    assert offsets["centroid"] < 0.05 < 1.0 < offsets["bbox"]
