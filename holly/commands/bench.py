"""Benchmark the renderer and a training step against the dense reference renderer.

Prints forward+backward images/s of the separable renderer and of the dense reference (the
original's formulation), their ratio, and the same for a full training step. Defaults are the
paper's scale: batch 32, 350 points, 128x128 images, sigma 2.
"""

from __future__ import annotations

import json
import logging

from holly.provenance import device_description

log = logging.getLogger(__name__)


def add_args(parser) -> None:
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=350)
    parser.add_argument("--size", type=int, default=128, help="image height and width (pixels)")
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of the fast path")
    parser.add_argument("--dense-repeats", type=int, default=2, help="timed calls of the reference")
    parser.add_argument("--json", help="also write the results to this JSON file")


def main(args) -> int:
    from holly.atomic import write_json
    from holly.bench import BenchSetup, bench_renderer, bench_training_step
    from holly.train import pick_device

    device = pick_device(args.device)
    setup = BenchSetup(
        args.batch, args.points, args.size, args.sigma, device, args.repeats, args.dense_repeats
    )
    results = {
        "device": device_description(device),
        "batch": args.batch,
        "points": args.points,
        "size": args.size,
        "sigma": args.sigma,
        "renderer": bench_renderer(setup),
        "training_step": bench_training_step(setup),
    }
    r, t = results["renderer"], results["training_step"]
    print(f"device: {results['device']}")
    print(f"B={args.batch} N={args.points} {args.size}x{args.size} sigma={args.sigma}")
    print(
        f"renderer fwd+bwd  separable {r['separable_images_per_s']:10.1f} img/s   "
        f"dense {r['dense_images_per_s']:8.1f} img/s   ratio {r['ratio']:7.1f}x"
    )
    print(
        f"training step     fast      {t['fast_images_per_s']:10.1f} img/s   "
        f"dense {t['dense_images_per_s']:8.1f} img/s   ratio {t['ratio']:7.1f}x"
    )
    if args.json:
        write_json(args.json, results)
    log.debug(json.dumps(results))
    return 0
