"""Benchmark the renderer and a training step against the dense reference renderer.

Prints forward+backward images/s of the separable renderer and of the dense reference (the
original's formulation), their ratio, and the same for a full training step, plus the pose CNN
alone (its share of the step). Each side is timed call by call in interleaved rounds: best and
median images/s, the spread of the calls (interquartile range / median), and the ratio of the
best calls. Defaults are the paper's scale: batch 32, 350 points, 128x128 images, sigma 2.
"""

from __future__ import annotations

import json
import logging

from holly.run.provenance import device_description

log = logging.getLogger(__name__)


def add_args(parser) -> None:
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=350)
    parser.add_argument("--size", type=int, default=128, help="image height and width (pixels)")
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=15, help="timed calls of the fast path")
    parser.add_argument("--dense-repeats", type=int, default=3, help="timed calls of the reference")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="the pose CNN's precision in the training step (train.precision)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="run the pose CNN in channels-last layout"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")


def _row(name: str, fast: dict, dense: dict | None, ratio: float | None) -> str:
    text = (
        f"{name:<18} {fast['best_images_per_s']:9.1f} {fast['median_images_per_s']:9.1f} "
        f"{100 * fast['spread']:5.0f}%"
    )
    if dense is not None:
        text += (
            f"   {dense['best_images_per_s']:8.2f} {dense['median_images_per_s']:8.2f} "
            f"{100 * dense['spread']:5.0f}%   {ratio:7.1f}x"
        )
    return text


def main(args) -> int:
    from holly.atomic import write_json
    from holly.train.bench import BenchSetup, bench_cnn, bench_renderer, bench_training_step
    from holly.train.trainer import pick_device

    device = pick_device(args.device)
    setup = BenchSetup(
        args.batch,
        args.points,
        args.size,
        args.sigma,
        device,
        args.repeats,
        args.dense_repeats,
        args.precision,
        args.channels_last,
    )
    results = {
        "device": device_description(device),
        "batch": args.batch,
        "points": args.points,
        "size": args.size,
        "sigma": args.sigma,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "renderer": bench_renderer(setup),
        "training_step": bench_training_step(setup),
        "cnn": bench_cnn(setup),
    }
    r, t = results["renderer"], results["training_step"]
    print(f"device: {results['device']}")
    print(
        f"B={args.batch} N={args.points} {args.size}x{args.size} sigma={args.sigma} "
        f"CNN {args.precision}{' channels-last' if args.channels_last else ''}"
    )
    print(f"{'images/s':<18} {'holly':>9} {'':>9} {'':>6}   {'dense reference':>24}   {'ratio':>8}")
    print(
        f"{'':<18} {'best':>9} {'median':>9} {'spread':>6}   {'best':>8} {'median':>8} "
        f"{'spread':>6}   {'(best)':>8}"
    )
    print(_row("renderer fwd+bwd", r["fast"], r["dense"], r["ratio"]))
    print(_row("training step", t["fast"], t["dense"], t["ratio"]))
    print(_row("pose CNN fwd+bwd", results["cnn"], None, None))
    if args.json:
        write_json(args.json, results)
    log.debug(json.dumps(results))
    return 0
