"""Simulate a data set from a shape and write it as an image store (Zarr).

Uses the experiment config's data/render/sigma settings: the training (or test) split's images
are rendered at every sigma of the config's sigma list (or --sigmas) and written with the
ground-truth poses (rotation, translation) and particle ids. The same images are what
`holly train` renders on the fly; the store is for inspection, sharing, or training from Zarr.
"""

from __future__ import annotations

import logging

from holly.commands.config_args import add_config_args, config_overrides, load_experiment_config

log = logging.getLogger(__name__)


def add_args(parser) -> None:
    add_config_args(parser)
    parser.add_argument("--out", required=True, help="image store to write (.zarr folder)")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument(
        "--sigmas",
        help="comma-separated sigmas in pixels (default: the "
        "distinct values of the config's sigma list)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing store")


def main(args) -> int:
    import numpy as np
    import torch

    from holly.data.imagestore import ORIENTATION, StoreWriter, base_attrs
    from holly.data.shapes import load_shape
    from holly.data.sigmas import load_sigma_list, parse_sigma_text
    from holly.data.simulate import simulate
    from holly.errors import HollyError

    cfg = load_experiment_config(args, config_overrides(args))
    if args.sigmas:
        try:
            sigmas = parse_sigma_text(args.sigmas)
        except ValueError:
            raise HollyError(
                f"--sigmas must be comma-separated numbers, got {args.sigmas!r}"
            ) from None
        sigmas = load_sigma_list(sigmas)
    else:
        sigmas = sorted(set(load_sigma_list(cfg.sigma.values)), reverse=True)
    vertices = load_shape(cfg.data.shape, cfg.data.fit_radius)
    train, test = simulate(vertices, cfg)
    data = train if args.split == "train" else test
    n, h, w = len(data), cfg.render.height, cfg.render.width
    idx = torch.arange(n)

    def blocks(sigma):
        for part in idx.split(256):
            yield data.images(part, sigma).numpy()

    with StoreWriter(
        args.out, n_images=n, height=h, width=w, sigmas=sigmas, overwrite=args.force
    ) as writer:
        for sigma in sigmas:
            writer.write_level(sigma, blocks(sigma))
        writer.write_array("particle_id", data.item_particle.numpy().astype(np.int32))
        writer.write_array("rotation", data.rotations(idx).numpy().astype(np.float32))
        writer.write_array("translation", data.translations_of(idx).numpy().astype(np.float32))
        attrs = base_attrs(
            n_images=n,
            height=h,
            width=w,
            sigmas=sigmas,
            orientation=ORIENTATION,
            source={"simulated": cfg.data.shape, "split": args.split},
            params={"config": cfg.to_dict()},
        )
        writer.commit(attrs)
    log.info(
        "wrote %d simulated %s images at %d sigma levels to %s",
        n,
        args.split,
        len(sigmas),
        args.out,
    )
    return 0
