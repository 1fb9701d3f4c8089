"""Localisation-level simulation of SMLM particles: a table that goes through ``holly localise``.

The rendered-image simulation (:mod:`holly.data.simulate`) is the fast path; this one makes what a
microscope makes, a localisation table, so that simulated and real data take the same path
(:mod:`holly.data.locformats`, :mod:`holly.data.localisations`). For each of
``particles`` particles:

1. **Structure.** The sites of a built-in shape (:mod:`holly.data.shapes`; ``logo`` and ``pore`` are
   the sparse flat ones) or of a point file, centred and scaled so that the structure's
   diameter (twice the farthest site's distance from the centroid) is ``size_nm``.
2. **Labelling.** Each site carries a fluorophore with probability ``labelling``, independently
   per particle: each particle shows its own random subset of the sites.
3. **Linker.** Each fluorophore sits ``linker_nm`` from its site in a uniformly random 3D
   direction (drawn once per fluorophore).
4. **View.** One rotation per particle: ``uniform`` (Haar-random in 3D), ``tilt`` (the viewing
   direction uniform over the spherical cap of half-angle ``max_tilt_deg`` about the
   structure's z axis, the in-plane angle uniform) or ``inplane`` (about the viewing axis
   only). All three are ``R = R_z(alpha) R_x(theta) R_z(beta)`` with alpha, beta uniform and
   cos theta uniform on [-1, 1], [cos T, 1] or {1}; theta is the out-of-plane tilt. For
   ``tilt`` and ``inplane`` a share ``face_down`` of the particles lies on its other face (an
   origami lands on glass on either): ``R diag(1, -1, -1)``, the half turn about x first.
5. **Blinking.** Each fluorophore gives a random number of localisations with mean ``blinks``:
   ``geometric`` (1, 2, ...; every fluorophore is seen at least once) or ``poisson`` (0, 1,
   ...; some labelled sites are never seen).
6. **Precision.** Each localisation is its fluorophore's position in the camera frame plus
   Gaussian noise of sd ``sigma_xy_nm`` in x and y and ``sigma_z_nm`` (default: the same) in z.
7. **Background.** A Poisson number of localisations (mean ``background`` per particle, or
   ``background_density`` per um^2 of the field) uniform in the particle's field: a square of
   side ``field_nm`` (default 1.5 x ``size_nm``) around the particle, z uniform over the same
   range.

Conventions. ``rotations[p]`` is in the renderer's convention (:mod:`holly.method.render`,
``x' = R x``, +y up): ``holly localise`` renders particle ``p``'s copy with in-plane angle ``phi``
(the store's ``rotation_angle``) as ``render(R_z(phi) rotations[p] sites)``, centred on the bounding
box and scaled by the store's ``pixels_per_unit``. The table is in camera coordinates (y down): its
``(x, y, z)`` is ``diag(1, -1, -1) R (site + linker) + noise`` plus the particle's centre in the
field (a proper rotation of the structure, so its handedness is kept). Particles sit on a grid in
the field, ``2 field_nm`` apart.

One ``seed`` drives every draw: the same parameters and seed give the same files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from holly import __version__
from holly.atomic import atomic_path, refuse_inputs, write_json
from holly.data.imagestore import ImageStore
from holly.data.pointio import write_points
from holly.data.shapes import SIZE_NM, load_shape
from holly.errors import HollyError

log = logging.getLogger(__name__)

VIEWS = ("uniform", "tilt", "inplane")
BLINKING = ("geometric", "poisson")
KIND = "localisation-simulation"  # the sidecar JSON's marker: a table holly simulated
COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "z [nm]",
    "uncertainty_xy [nm]",
    "uncertainty_z [nm]",
    "particle",
    "site",
)
DEFAULT_SIZE_NM = 100.0  # diameter of a shape without a natural size in nm
FIELD_FACTOR = 1.5  # default field side, in structure diameters
CAMERA = np.diag([1.0, -1.0, -1.0])  # renderer frame (+y up) -> table (camera, y down)


@dataclass(frozen=True)
class LocSimParams:
    """Every parameter of a localisation simulation (nm, degrees); see the module docstring."""

    shape: str = "logo"
    size_nm: float | None = None  # None: the shape's natural size (shapes.SIZE_NM) or 100 nm
    particles: int = 200
    labelling: float = 1.0
    linker_nm: float = 0.0
    blinking: str = "geometric"
    blinks: float = 5.0
    sigma_xy_nm: float = 5.0
    sigma_z_nm: float | None = None  # None: isotropic (= sigma_xy_nm)
    background: float = 0.0
    background_density: float | None = None  # per um^2 of the field; overrides background
    field_nm: float | None = None  # None: FIELD_FACTOR x size_nm
    views: str = "uniform"
    max_tilt_deg: float = 30.0
    face_down: float = 0.0  # share of particles on their other face (tilt and inplane views)
    frames: int = 10000
    seed: int = 0

    def check(self) -> None:
        """Refuse values that make no sense, naming the option (``--labelling``, ...)."""

        def bad(name: str, rule: str, value) -> HollyError:
            return HollyError(f"--{name.replace('_', '-')} must be {rule}, got {value!r}")

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, "a finite number", value)
        if not (isinstance(self.particles, int) and self.particles >= 1):
            raise bad("particles", "a positive integer", self.particles)
        if not (0.0 < self.labelling <= 1.0):
            raise bad("labelling", "in (0, 1] (the fraction of sites labelled)", self.labelling)
        if self.size_nm is not None and not self.size_nm > 0:
            raise bad("size_nm", "positive (the structure's diameter in nm)", self.size_nm)
        for name in ("linker_nm", "sigma_xy_nm", "background"):
            if getattr(self, name) < 0:
                raise bad(name, "non-negative", getattr(self, name))
        if self.sigma_z_nm is not None and self.sigma_z_nm < 0:
            raise bad("sigma_z_nm", "non-negative", self.sigma_z_nm)
        if self.background_density is not None and self.background_density < 0:
            raise bad("background_density", "non-negative", self.background_density)
        if self.field_nm is not None and not self.field_nm > 0:
            raise bad("field_nm", "positive", self.field_nm)
        if self.blinking not in BLINKING:
            raise bad("blinking", f"one of {', '.join(BLINKING)}", self.blinking)
        if self.blinking == "geometric" and not self.blinks >= 1:
            raise bad(
                "blinks", ">= 1 for geometric blinking (one or more per fluorophore)", self.blinks
            )
        if self.blinking == "poisson" and not self.blinks > 0:
            raise bad("blinks", "positive", self.blinks)
        if self.views not in VIEWS:
            raise bad("views", f"one of {', '.join(VIEWS)}", self.views)
        if not (0.0 <= self.max_tilt_deg <= 90.0):
            raise bad("max_tilt", "in [0, 90] degrees", self.max_tilt_deg)
        if not (0.0 <= self.face_down <= 1.0):
            raise bad("face_down", "in [0, 1] (the share of particles face down)", self.face_down)
        if self.face_down > 0 and self.views == "uniform":
            raise bad(
                "face_down",
                "0 with --views uniform (uniform views show both faces already); use --views "
                "tilt or inplane",
                self.face_down,
            )
        if not (isinstance(self.frames, int) and self.frames >= 1):
            raise bad("frames", "a positive integer", self.frames)


@dataclass
class LocSimulation:
    """A simulated set: the table's columns, the ground truth and the parameters.

    Table (``M`` localisations, sorted by particle then frame): ``particle [M]``, ``site [M]``
    (-1: background), ``fluorophore [M]`` (-1: background), ``frame [M]`` (1-based),
    ``xyz_nm [M, 3]`` (camera coordinates, y down, with the particle's centre),
    ``sigma_xy_nm [M]``, ``sigma_z_nm [M]``. Truth: ``sites_nm [S, 3]`` (renderer frame,
    centred), ``rotations [P, 3, 3]``, ``tilt_deg [P]``, ``centres_nm [P, 3]``,
    ``labelled [P, S]``, per fluorophore ``fluor_particle [F]``, ``fluor_site [F]``,
    ``fluor_nm [F, 3]`` (structure frame, linker included) and ``n_blinks [F]``,
    ``n_background [P]``.
    """

    params: LocSimParams
    size_nm: float
    field_nm: float
    sites_nm: np.ndarray
    rotations: np.ndarray
    tilt_deg: np.ndarray
    centres_nm: np.ndarray
    labelled: np.ndarray
    fluor_particle: np.ndarray
    fluor_site: np.ndarray
    fluor_nm: np.ndarray
    n_blinks: np.ndarray
    n_background: np.ndarray
    particle: np.ndarray
    site: np.ndarray
    fluorophore: np.ndarray
    frame: np.ndarray
    xyz_nm: np.ndarray
    sigma_xy_nm: np.ndarray
    sigma_z_nm: np.ndarray

    def summary(self) -> dict:
        """Counts and achieved rates, for the record and the log."""
        n_sites = self.labelled.size
        per_particle = np.bincount(self.particle, minlength=self.params.particles)
        return {
            "n_localisations": int(len(self.particle)),
            "n_fluorophores": int(len(self.fluor_site)),
            "n_background": int(self.n_background.sum()),
            "labelled_fraction": float(self.labelled.sum() / n_sites) if n_sites else 0.0,
            "mean_blinks": float(self.n_blinks.mean()) if len(self.n_blinks) else 0.0,
            "localisations_per_particle_median": float(np.median(per_particle)),
            "empty_particles": int((per_particle == 0).sum()),
            "tilt_deg_max": float(self.tilt_deg.max()),
        }


def structure_nm(shape: str, size_nm: float | None) -> tuple[np.ndarray, float]:
    """Sites ``[S, 3]`` in nm, centred, scaled to diameter ``size_nm`` (or the natural size)."""

    size = size_nm if size_nm is not None else SIZE_NM.get(shape, DEFAULT_SIZE_NM)
    # fit_radius 1.5: centred on the centroid, farthest site at 1.5, i.e. diameter 3
    return load_shape(shape, fit_radius=1.5) * (size / 3.0), float(size)


def view_rotations(
    n: int, views: str, max_tilt_deg: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rotations ``R_z(alpha) R_x(theta) R_z(beta)`` ``[n, 3, 3]`` and tilts theta (deg).

    ``uniform``: Haar-random (cos theta uniform on [-1, 1]); ``tilt``: the viewing direction
    ``R[2]`` uniform over the cap of half-angle ``max_tilt_deg`` about +z; ``inplane``: theta 0.
    """
    alpha = rng.uniform(0, 2 * np.pi, n)
    beta = rng.uniform(0, 2 * np.pi, n)
    if views == "uniform":
        cos_t = rng.uniform(-1.0, 1.0, n)
    elif views == "tilt":
        cos_t = rng.uniform(math.cos(math.radians(max_tilt_deg)), 1.0, n)
    elif views == "inplane":
        cos_t, beta = np.ones(n), np.zeros(n)
    else:
        raise HollyError(f"--views must be one of {', '.join(VIEWS)}, got {views!r}")
    theta = np.arccos(np.clip(cos_t, -1.0, 1.0))
    rot = _rz(alpha) @ _rx(theta) @ _rz(beta)
    return rot, np.degrees(theta)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], 1)


def _rx(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], 1)


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def simulate_localisations(params: LocSimParams) -> LocSimulation:
    """Draw one simulated particle set (see the module docstring); deterministic in the seed."""
    params.check()
    rng = np.random.default_rng(params.seed)
    sites, size = structure_nm(params.shape, params.size_nm)
    field = params.field_nm if params.field_nm is not None else FIELD_FACTOR * size
    n_p, n_s = params.particles, len(sites)

    rotations, tilt = view_rotations(n_p, params.views, params.max_tilt_deg, rng)
    if params.face_down > 0:  # drawn only then: simulations without it keep their stream
        down = rng.random(n_p) < params.face_down
        rotations[down] = rotations[down] @ np.diag([1.0, -1.0, -1.0])
    labelled = rng.random((n_p, n_s)) < params.labelling
    fluor_particle, fluor_site = np.nonzero(labelled)  # particle-major order
    n_f = len(fluor_site)
    fluor = sites[fluor_site] + params.linker_nm * _unit_vectors(n_f, rng)
    if params.blinking == "geometric":
        blinks = rng.geometric(1.0 / params.blinks, n_f)
    else:
        blinks = rng.poisson(params.blinks, n_f)

    # fluorophore localisations, camera frame (renderer convention, +y up), before noise
    loc_f = np.repeat(np.arange(n_f), blinks)
    loc_p = fluor_particle[loc_f]
    cam = np.einsum("mij,mj->mi", rotations[loc_p], fluor[loc_f])
    # background: uniform in the particle's field (square of side `field`, z over the same range)
    area_um2 = (field / 1000.0) ** 2
    mean_bg = (
        params.background_density * area_um2
        if params.background_density is not None
        else params.background
    )
    n_bg = rng.poisson(mean_bg, n_p) if mean_bg > 0 else np.zeros(n_p, dtype=np.int64)
    bg_p = np.repeat(np.arange(n_p), n_bg)
    bg = rng.uniform(-field / 2, field / 2, (len(bg_p), 3))

    particle = np.concatenate([loc_p, bg_p]).astype(np.int64)
    site = np.concatenate([fluor_site[loc_f], np.full(len(bg_p), -1)]).astype(np.int64)
    fluorophore = np.concatenate([loc_f, np.full(len(bg_p), -1)]).astype(np.int64)
    cam = np.concatenate([cam, bg])
    m = len(particle)
    sigma_z = params.sigma_z_nm if params.sigma_z_nm is not None else params.sigma_xy_nm
    noise = rng.normal(size=(m, 3)) * np.array([params.sigma_xy_nm, params.sigma_xy_nm, sigma_z])
    cam = cam + noise
    frame = rng.integers(1, params.frames + 1, m)

    # particles on a grid in the field, 2 fields apart; table = camera coordinates, y down
    cols = math.ceil(math.sqrt(n_p))
    k = np.arange(n_p)
    centres = np.stack([k % cols + 1, k // cols + 1, np.zeros(n_p)], 1) * 2 * field
    xyz = cam @ CAMERA.T + centres[particle]
    order = np.lexsort((frame, particle))
    return LocSimulation(
        params=params,
        size_nm=size,
        field_nm=float(field),
        sites_nm=sites,
        rotations=rotations,
        tilt_deg=tilt,
        centres_nm=centres,
        labelled=labelled,
        fluor_particle=fluor_particle.astype(np.int64),
        fluor_site=fluor_site.astype(np.int64),
        fluor_nm=fluor,
        n_blinks=blinks.astype(np.int64),
        n_background=np.asarray(n_bg, dtype=np.int64),
        particle=particle[order],
        site=site[order],
        fluorophore=fluorophore[order],
        frame=frame[order],
        xyz_nm=xyz[order],
        sigma_xy_nm=np.full(m, float(params.sigma_xy_nm)),
        sigma_z_nm=np.full(m, float(sigma_z)),
    )


# ---------------------------------------------------------------------------- files
def sidecars(out: str | os.PathLike) -> dict[str, Path]:
    """The files of a simulation written to ``out`` (``NAME.csv``): table, truth, sites, record."""
    out = Path(out)
    return {
        "table": out,
        "truth": out.with_suffix(".truth.npz"),
        "sites": out.with_suffix(".sites.ply"),
        "record": out.with_suffix(".json"),
    }


def _holly_wrote(record: Path) -> bool:

    try:
        return json.loads(record.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_outputs(out: str | os.PathLike, force: bool, inputs=()) -> dict[str, Path]:
    """The output paths, refused (before anything is written) when they cannot be written.

    ``out`` must be a ``.csv`` path outside every input. Existing outputs are an error unless
    ``force`` and the sidecar record says holly simulated them (a user's table is never
    replaced).
    """

    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise HollyError(f"--out {out}: give a .csv path (a ThunderSTORM-style table)")
    paths = sidecars(out)
    refuse_inputs({f"--out ({k})": p for k, p in paths.items()}, list(inputs))
    existing = [p for p in paths.values() if p.exists()]
    if existing:
        if not force:
            raise HollyError(
                f"--out {out}: {existing[0]} exists; pass --force to replace a simulation"
            )
        if not _holly_wrote(paths["record"]):
            raise HollyError(
                f"--out {out}: {existing[0]} exists and {paths['record'].name} does not mark it "
                "as holly's simulation; --force replaces only those. Choose another --out"
            )
    return paths


def write_simulation(sim: LocSimulation, out: str | os.PathLike, force: bool = False) -> dict:
    """Write the table (``out``, CSV) and its sidecars; returns the record (``NAME.json``).

    * ``NAME.csv``: ThunderSTORM-style columns :data:`COLUMNS` (nm; ``particle`` groups rows:
      ``holly localise NAME.csv --particle-column particle``; ``site`` is -1 for background);
    * ``NAME.truth.npz``: the ground truth (rotations, tilts, sites, labelling, fluorophores);
    * ``NAME.sites.ply``: the sites in nm (renderer frame), for scoring clouds;
    * ``NAME.json``: every parameter, the seed, the counts and the conventions.

    The table is written last; every file is written atomically.
    """
    import pandas as pd

    shape = sim.params.shape
    inputs = [shape] if Path(shape).suffix and Path(shape).exists() else []
    paths = check_outputs(out, force, inputs)
    with atomic_path(paths["truth"]) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            rotations=sim.rotations,
            tilt_deg=sim.tilt_deg,
            centres_nm=sim.centres_nm,
            sites_nm=sim.sites_nm,
            labelled=sim.labelled,
            fluor_particle=sim.fluor_particle,
            fluor_site=sim.fluor_site,
            fluor_nm=sim.fluor_nm,
            n_blinks=sim.n_blinks,
            n_background=sim.n_background,
        )
    write_points(
        paths["sites"],
        sim.sites_nm,
        comment="holly simulate-localisations: structure sites",
        meta={"holly": __version__, "units": "nm", "shape": Path(shape).name},
    )
    record = {
        "kind": KIND,
        "holly_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": asdict(sim.params),
        "seed": sim.params.seed,
        "size_nm": sim.size_nm,
        "field_nm": sim.field_nm,
        "n_sites": len(sim.sites_nm),
        **sim.summary(),
        "files": {k: p.name for k, p in paths.items()},
        "read_with": f"holly localise {paths['table'].name} --particle-column particle",
        "conventions": {
            "rotations": "renderer convention (x' = R x, +y up): holly localise renders "
            "particle p's copy with in-plane angle phi as render(R_z(phi) rotations[p] sites)",
            "table": "camera coordinates, y down: (x, y, z) = diag(1, -1, -1) R (site + linker) "
            "+ noise + centres_nm[p]",
            "tilt_deg": "angle between the viewing direction R[2] and the structure's z axis",
        },
    }
    write_json(paths["record"], record)
    table = pd.DataFrame(
        {
            "id": np.arange(1, len(sim.particle) + 1),
            "frame": sim.frame,
            "x [nm]": sim.xyz_nm[:, 0],
            "y [nm]": sim.xyz_nm[:, 1],
            "z [nm]": sim.xyz_nm[:, 2],
            "uncertainty_xy [nm]": sim.sigma_xy_nm,
            "uncertainty_z [nm]": sim.sigma_z_nm,
            "particle": sim.particle,
            "site": sim.site,
        },
        columns=list(COLUMNS),
    )
    with atomic_path(paths["table"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.3f")
    if record["empty_particles"]:
        log.warning(
            "%d of %d particles have no localisations (labelling %.2g, %s blinking): "
            "holly localise drops them",
            record["empty_particles"],
            sim.params.particles,
            sim.params.labelling,
            sim.params.blinking,
        )
    return record


def read_truth(out: str | os.PathLike) -> dict:
    """The ground truth written beside a simulated table (``NAME.truth.npz``) as arrays."""
    path = sidecars(out)["truth"]
    try:
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise HollyError(f"{path}: not a readable simulation truth file ({exc})") from exc


def read_record(out: str | os.PathLike) -> dict:
    """The record written beside a simulated table (``NAME.json``): parameters, seed, counts."""
    path = sidecars(out)["record"]
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HollyError(f"{path}: not a readable simulation record ({exc})") from exc
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise HollyError(f"{path} is not the record of `holly simulate-localisations`")
    return record


def store_poses(store_path: str | os.PathLike, out: str | os.PathLike) -> np.ndarray:
    """True rotations ``[N, 3, 3]`` of the images of a store that ``holly localise`` made from a
    simulated table ``out``: image ``i`` shows simulated particle ``label[particle_id[i]]``
    rotated in-plane by ``rotation_angle[i]``, so its pose is ``R_z(angle) rotations[label]``
    (renderer convention; the cloud frame is the sites', up to the bounding-box shift and the
    store's scale).
    """

    store = ImageStore.open(store_path)
    truth = read_truth(out)
    particle = store_particles(store, len(truth["rotations"]), out)
    angle = store.array("rotation_angle").astype(np.float64)
    return _rz(angle) @ truth["rotations"][particle]


def store_sites(store_path: str | os.PathLike, out: str | os.PathLike) -> np.ndarray:
    """The simulated sites ``[M, 3]`` of table ``out`` in the model units of the store that
    ``holly localise`` made from it, centred on their centroid (the frame of
    :func:`store_poses`' rotations, up to that shift)."""
    store = ImageStore.open(store_path)
    if not store.nm_per_model_unit:
        raise HollyError(f"{store_path} records no nm per model unit: not a localisation store")
    sites = read_truth(out)["sites_nm"] / store.nm_per_model_unit
    return sites - sites.mean(0)


def store_particles(store: ImageStore, n_simulated: int, out: str | os.PathLike) -> np.ndarray:
    """The simulated particle ``[N]`` each image of ``store`` shows (``holly localise`` numbers
    the particles it kept; ``particle_labels`` maps them back to the table's ``particle``)."""
    labels = store.attrs["source"].get("particle_labels")
    ids = store.particle_ids.astype(np.int64)
    particle = np.asarray(labels, dtype=np.int64)[ids] if labels is not None else ids
    if particle.max() >= n_simulated:
        raise HollyError(f"{store.path} holds particles that {sidecars(out)['truth']} lacks")
    return particle
