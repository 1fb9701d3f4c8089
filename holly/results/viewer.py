"""An offline, self-contained 3D viewer of a reconstruction and its evolution over training.

The page is one HTML file with inline CSS and JavaScript and the data inline as JSON: no
external library, no network. Each viewer draws the points on a ``<canvas>`` (orthographic
projection, depth-sorted and depth-shaded): drag to rotate, wheel to zoom, double-click to reset,
a slider (and a play button) over the training snapshots, the reconstruction and the ground
truth in two colours, each switchable. The data frame's x, y, z axes are drawn bottom left, and a
scale bar bottom right: a round length in nm when the run's image store records its pixel size,
else in model units with its length in image pixels.

When the run has been evaluated (``aligned_points.ply``), every snapshot is moved into the
ground truth's frame with the one rigid (possibly mirrored) transform that takes ``points.ply``
onto ``aligned_points.ply``, recovered by orthogonal Procrustes on the corresponding points.

For tests and the report the page records what it did: each viewer element gets
``data-status="ok"``, ``data-points-drawn`` and ``data-scale-bar`` (its label) after drawing,
and uncaught errors are counted in ``<body data-viewer-errors>``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from holly.atomic import atomic_path
from holly.errors import HollyError
from holly.method.align import kabsch
from holly.results.style import RECON_COLOUR, TRUTH_COLOUR
from holly.run.runfolder import RunFolder
from holly.units import model_unit_px

log = logging.getLogger(__name__)

DECIMALS = 4  # coordinates are rounded in the page: 1e-4 model units is far below a pixel


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Orthogonal ``Q`` and ``t`` minimising ``|source @ Q + t - target|`` (rows correspond).

    A reflection is allowed (``det Q = -1``), as evaluation may align a mirrored cloud.

    Parameters
    ----------
    source, target : ndarray [N, 3]

    Returns
    -------
    q : ndarray [3, 3]
    t : ndarray [3]
    rms : float
        Root-mean-square residual, model units.
    """
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape:
        raise HollyError(f"cannot fit {source.shape} points onto {target.shape}")
    rot, trans = kabsch(source[None], target[None], allow_reflection=True)
    q, t = rot[0].T, trans[0]  # row vectors: source @ q + t
    rms = float(np.sqrt(((source @ q + t - target) ** 2).sum(1).mean()))
    return q, t, rms


def snapshot_files(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of ``RUN/snapshots/points_XXXXXXXX.ply``, by step."""
    return RunFolder(run_dir).snapshot_files()


def _pick(items: list, k: int) -> list:
    """At most ``k`` items, evenly spaced, always keeping the first and the last."""
    if len(items) <= k:
        return items
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def _flat(xyz: np.ndarray) -> list[float]:
    return np.round(np.asarray(xyz, float).reshape(-1), DECIMALS).tolist()


def viewer_data(
    run_dir: str | os.PathLike, max_snapshots: int = 40, name: str | None = None
) -> dict:
    """The data one viewer shows, from a run folder (docs/architecture.md).

    Returns
    -------
    dict
        ``name``, ``frame`` (``"ground truth"`` when aligned, else ``"training"``), ``truth``
        (flat ``[x0, y0, z0, x1, ...]`` or None) and ``snapshots`` (list of ``{"step", "points"}``:
        the initial cloud as step 0, training snapshots, and last the final reconstruction).
    """
    run = Path(run_dir)
    rf = RunFolder(run)
    if not rf.is_finished():
        raise HollyError(f"{rf.points} not found: the run has not finished (`holly train`)")
    if max_snapshots < 1:
        raise HollyError(f"max_snapshots must be >= 1, got {max_snapshots}")
    points = rf.read_cloud(rf.points)
    found = rf.snapshot_files()
    if rf.initial_points.is_file():
        found.insert(0, (0, rf.initial_points))  # step 0: the random initial cloud
    snaps = _pick(found, max(1, max_snapshots - 1))
    clouds = [(step, rf.read_cloud(path)) for step, path in snaps]
    last_step = snaps[-1][0] if snaps else 0
    if (
        not clouds
        or clouds[-1][1].shape != points.shape
        or not np.allclose(clouds[-1][1], points, atol=1e-6)
    ):
        clouds.append((last_step, points))
    truth_path, aligned_path = rf.ground_truth, rf.aligned_points
    truth, frame = None, "training"
    if truth_path.is_file():
        truth = rf.read_cloud(truth_path)
        if aligned_path.is_file():
            q, t, rms = rigid_fit(points, rf.read_cloud(aligned_path))
            if rms < 1e-3:
                clouds = [(step, xyz @ q + t) for step, xyz in clouds]
                frame = "ground truth"
            else:
                log.warning(
                    "%s does not match points.ply by a rigid move (rms %.3g): showing "
                    "unaligned clouds; rerun `holly evaluate`",
                    aligned_path,
                    rms,
                )
        else:
            log.warning(
                "%s missing: showing the clouds unaligned to the ground truth; run "
                "`holly evaluate` first",
                aligned_path,
            )
    return {
        "name": name or run.name,
        "frame": frame,
        "units": _units(rf),
        "truth": _flat(truth) if truth is not None else None,
        "snapshots": [{"step": int(step), "points": _flat(xyz)} for step, xyz in clouds],
    }


def _units(rf: RunFolder) -> dict:
    """``model_unit_px`` and ``model_unit_nm`` (None if unknown) for the viewer's scale bar."""
    height = (rf.read_config(required=False).get("render") or {}).get("height")
    scale = rf.read_scale()
    return {
        "model_unit_px": model_unit_px(int(height)) if height else None,
        "model_unit_nm": scale["nm_per_model_unit"] if scale else None,
    }


def pair_data(first: np.ndarray, second: np.ndarray, name: str, labels: tuple[str, str]) -> dict:
    """Viewer data of two fixed clouds over each other (no training slider): ``second`` in the
    reconstruction's colour, ``first`` in the ground truth's, named by ``labels`` (second,
    first). Used for the two half-set reconstructions of an experiment."""
    return {
        "name": name,
        "frame": labels[1],
        "labels": list(labels),
        "truth": _flat(first),
        "snapshots": [{"step": 0, "points": _flat(second)}],
    }


VIEWER_CSS = """
.holly-viewer{font:13px system-ui,sans-serif;max-width:680px;margin:0.5em 0 1.5em 0}
.holly-viewer canvas{width:100%;height:auto;aspect-ratio:4/3;background:#fbfbfb;
  border:1px solid #ddd;border-radius:4px;cursor:grab;touch-action:none;display:block}
.holly-viewer .hv-controls{display:flex;flex-wrap:wrap;gap:0.8em;align-items:center;
  margin-top:0.4em}
.holly-viewer .hv-controls input[type=range]{flex:1 1 200px}
.holly-viewer .hv-key{display:inline-block;width:0.8em;height:0.8em;border-radius:50%;
  margin-right:0.2em;vertical-align:middle}
.holly-viewer .hv-title{font-weight:600;margin-bottom:0.3em}
.holly-viewer .hv-hint{color:#777;font-size:11px}
"""

# Plain ES2017, no dependencies. Keep in step with the controls built in viewer_fragment().
VIEWER_JS = """
(function () {
  "use strict";
  var RECON = "__RECON__", TRUTH = "__TRUTH__";
  var AXIS_COLOURS = ["#c0392b", "#2e8b57", "#2c6fbb"];
  function rgb(hex) {
    return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); });
  }
  function HollyViewer(root, data) {
    var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    var slider = root.querySelector(".hv-slider"), label = root.querySelector(".hv-step");
    var play = root.querySelector(".hv-play");
    var showRecon = root.querySelector(".hv-show-recon");
    var showTruth = root.querySelector(".hv-show-truth");
    var snaps = data.snapshots, truth = data.truth;
    var yaw = 0.6, pitch = -0.4, zoom = 1, index = snaps.length - 1, timer = null;
    var radius = 1e-6;
    function grow(flat) {
      for (var i = 0; i < flat.length; i += 3) {
        radius = Math.max(radius, Math.hypot(flat[i], flat[i + 1], flat[i + 2]));
      }
    }
    snaps.forEach(function (s) { grow(s.points); });
    if (truth) { grow(truth); } else { showTruth.checked = false; showTruth.disabled = true; }
    slider.max = String(snaps.length - 1);
    slider.value = String(index);
    function resize() {
      var dpr = window.devicePixelRatio || 1, w = canvas.clientWidth || 640;
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(w * 0.75 * dpr);
    }
    function project(flat, colour, out) {
      var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
      for (var i = 0; i < flat.length; i += 3) {
        var x = flat[i], y = flat[i + 1], z = flat[i + 2];
        var x1 = cy * x + sy * z, z1 = -sy * x + cy * z;   // yaw about y
        var y2 = cp * y - sp * z1, z2 = sp * y + cp * z1;  // pitch about x
        out.push([x1, y2, z2, colour]);
      }
    }
    function draw() {
      var w = canvas.width, h = canvas.height, items = [];
      ctx.clearRect(0, 0, w, h);
      if (showTruth.checked && truth) { project(truth, TRUTH, items); }
      if (showRecon.checked) { project(snaps[index].points, RECON, items); }
      items.sort(function (a, b) { return a[2] - b[2]; });  // far first (z towards viewer)
      var scale = zoom * 0.45 * Math.min(w, h) / radius;
      var dot = Math.max(2, Math.min(w, h) / 160);
      items.forEach(function (p) {
        var depth = 0.5 + 0.5 * Math.max(-1, Math.min(1, p[2] / radius));  // 0 far .. 1 near
        var c = rgb(p[3]).map(function (v) {
          return Math.round(255 - (255 - v) * (0.35 + 0.65 * depth));  // fade far points
        });
        ctx.fillStyle = "rgb(" + c.join(",") + ")";
        ctx.beginPath();
        ctx.arc(w / 2 + p[0] * scale, h / 2 - p[1] * scale, dot * (0.75 + 0.5 * depth),
                0, 2 * Math.PI);
        ctx.fill();
      });
      overlay(w, h, scale);
      label.textContent =
        "step " + snaps[index].step + " (" + (index + 1) + "/" + snaps.length + ")";
      root.dataset.pointsDrawn = String(items.length);
      root.dataset.status = "ok";
    }
    function nice(x) {  // 1, 2 or 5 times a power of ten, at most x
      var p = Math.pow(10, Math.floor(Math.log10(x))), m = x / p;
      return (m >= 5 ? 5 : m >= 2 ? 2 : 1) * p;
    }
    function num(v) { return String(Number(v.toPrecision(3))); }
    function overlay(w, h, scale) {
      // axes: the data frame's x, y, z as seen from the current view (bottom left)
      var dpr = window.devicePixelRatio || 1, len = 22 * dpr, ox = 34 * dpr, oy = h - 34 * dpr;
      var axes = [];
      project([1, 0, 0, 0, 1, 0, 0, 0, 1], "", axes);
      ctx.lineWidth = 1.5 * dpr;
      ctx.font = (11 * dpr) + "px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ["x", "y", "z"].forEach(function (name, k) {
        var ex = ox + axes[k][0] * len, ey = oy - axes[k][1] * len;
        ctx.strokeStyle = ctx.fillStyle = AXIS_COLOURS[k];
        ctx.beginPath(); ctx.moveTo(ox, oy); ctx.lineTo(ex, ey); ctx.stroke();
        ctx.fillText(name, ox + axes[k][0] * (len + 8 * dpr), oy - axes[k][1] * (len + 8 * dpr));
      });
      // scale bar (bottom right): a round length in nm where known, else in model units
      var units = data.units || {}, target = 0.2 * w / scale, bar, text;
      if (units.model_unit_nm) {
        var lengthNm = nice(target * units.model_unit_nm);
        bar = lengthNm / units.model_unit_nm;
        text = num(lengthNm) + " nm";
      } else {
        bar = nice(target);
        text = num(bar) + (bar === 1 ? " model unit" : " model units");
        if (units.model_unit_px) { text += " (" + num(bar * units.model_unit_px) + " px)"; }
      }
      var x1 = w - 16 * dpr, x0 = x1 - bar * scale, y = h - 16 * dpr;
      ctx.strokeStyle = ctx.fillStyle = "#333";
      ctx.lineWidth = 2 * dpr;
      ctx.beginPath();
      ctx.moveTo(x0, y - 4 * dpr);
      ctx.lineTo(x0, y);
      ctx.lineTo(x1, y);
      ctx.lineTo(x1, y - 4 * dpr);
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      ctx.fillText(text, x1, y - 6 * dpr);
      root.dataset.scaleBar = text;
    }
    var drag = null;
    canvas.addEventListener("pointerdown", function (e) {
      drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", function (e) {
      if (!drag) { return; }
      yaw += (e.clientX - drag[0]) * 0.01;
      pitch = Math.max(-1.57, Math.min(1.57, pitch + (e.clientY - drag[1]) * 0.01));
      drag = [e.clientX, e.clientY];
      draw();
    });
    canvas.addEventListener("pointerup", function () { drag = null; });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      zoom = Math.max(0.2, Math.min(8, zoom * Math.exp(-e.deltaY * 0.001)));
      draw();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { yaw = 0.6; pitch = -0.4; zoom = 1; draw(); });
    slider.addEventListener("input", function () { index = Number(slider.value); draw(); });
    showRecon.addEventListener("change", draw);
    showTruth.addEventListener("change", draw);
    play.addEventListener("click", function () {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
      if (index === snaps.length - 1) { index = 0; }
      play.textContent = "pause";
      timer = setInterval(function () {
        slider.value = String(index); draw();
        if (index < snaps.length - 1) { index += 1; return; }
        clearInterval(timer); timer = null; play.textContent = "play";
      }, 250);
    });
    window.addEventListener("resize", function () { resize(); draw(); });
    resize();
    draw();
  }
  window.HollyViewer = HollyViewer;
  window.addEventListener("error", function () {
    var n = Number(document.body.dataset.viewerErrors || 0) + 1;
    document.body.dataset.viewerErrors = String(n);
  });
  function start() {
    document.querySelectorAll(".holly-viewer[data-src]").forEach(function (root) {
      var data = JSON.parse(document.getElementById(root.dataset.src).textContent);
      new HollyViewer(root, data);
    });
    document.body.dataset.viewerErrors = document.body.dataset.viewerErrors || "0";
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
""".replace("__RECON__", RECON_COLOUR).replace("__TRUTH__", TRUTH_COLOUR)


def _json_for_script(data: dict) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def viewer_fragment(data: dict, uid: str) -> str:
    """The HTML of one viewer (its element, controls and inline data); needs :data:`VIEWER_JS`."""
    uid = re.sub(r"[^A-Za-z0-9_-]", "-", uid)
    name = html.escape(data["name"])
    truth_label = "ground truth" + (
        " (reconstruction aligned to it)" if data["frame"] == "ground truth" else ""
    )
    recon_label = "reconstruction"
    if data.get("labels"):  # a pair of clouds (pair_data), e.g. two half-set reconstructions
        recon_label, truth_label = (html.escape(x) for x in data["labels"])
    return f"""<div class="holly-viewer" id="viewer-{uid}" data-src="viewer-data-{uid}">
<div class="hv-title">{name}</div>
<canvas width="640" height="480" aria-label="3D view of {name}"></canvas>
<div class="hv-controls">
<button type="button" class="hv-play">play</button>
<input type="range" class="hv-slider" min="0" max="0" value="0" aria-label="training snapshot">
<span class="hv-step"></span>
</div>
<div class="hv-controls">
<label><input type="checkbox" class="hv-show-recon" checked><span class="hv-key"
 style="background:{RECON_COLOUR}"></span>{recon_label}</label>
<label><input type="checkbox" class="hv-show-truth" checked><span class="hv-key"
 style="background:{TRUTH_COLOUR}"></span>{truth_label}</label>
<span class="hv-hint">drag: rotate, wheel: zoom, double-click: reset; axes bottom left,
 scale bar bottom right</span>
</div>
<script type="application/json" id="viewer-data-{uid}">{_json_for_script(data)}</script>
</div>"""


def viewer_page(datasets: list[dict], title: str = "holly 3D viewer") -> str:
    """A complete, self-contained HTML page with one viewer per dataset."""
    body = "\n".join(viewer_fragment(d, f"{i}-{d['name']}") for i, d in enumerate(datasets))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}{VIEWER_CSS}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{body}
<script>{VIEWER_JS}</script>
</body></html>
"""


def write_viewer(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    max_snapshots: int = 40,
    title: str | None = None,
) -> Path:
    """Write the viewer page of one run folder to ``out`` (atomically)."""
    data = viewer_data(run_dir, max_snapshots)
    page = viewer_page([data], title or f"{data['name']}: reconstruction over training")
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote the 3D viewer of %s (%d snapshots) to %s", run_dir, len(data["snapshots"]), out)
    return out
