"""Template-free 2D particle fusion of an image store's localisations: a baseline for holly.

For particles seen from the top (origami on glass, pores in the envelope: what
``model.pose_prior: inplane`` trains on) the fusion methods of the field (Heydarian et al. 2018)
register the localisations of every particle onto one frame, with no model of the structure.
``holly fuse STORE`` does that to the particles ``holly localise`` put in STORE, so holly's
reconstruction can be compared with what such a method gets on the same particles
(holly/method/fusion.py). ``--method anneal`` aligns every particle at once against a template
of all the others by annealed expectation-maximisation; ``--method pairs`` registers pairs,
synchronises their angles and bootstraps; ``--method both`` (the default) runs each and keeps
the one whose particles fit each other better. Prior knowledge, where the user has it:
``--symmetry N`` (a pore's 8-fold) and ``--sites K`` (a template of K discrete sites in orbits
of N, for particles that show only a few sites each: holly/method/sitetemplate.py).

Writes the record (--out JSON: parameters, how sure the fusion was, the fused and the particles'
own extents, every particle's rotation and shift, provenance) and, with --figure, the fused
density. A particle may lie face down (an origami lands on glass on either face): the
annealing tries each particle's mirror image too unless ``--no-mirror`` (the pairs never do).
"""

from __future__ import annotations

import argparse
import logging
import math

from holly.atomic import refuse_inputs
from holly.config import fusion_prior_problem
from holly.data.fusionrecord import default_sigma, fusion_quality, write_fusion
from holly.data.localisations import read_store_localisations
from holly.errors import HollyError
from holly.method.fusion import METHODS, FusionParams
from holly.results.fusion import fused_density, run_fusion

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="image store made by `holly localise`")
    parser.add_argument("--out", required=True, metavar="JSON", help="fusion record to write")
    parser.add_argument("--figure", metavar="PATH", help="fused density figure (.png/.svg)")
    parser.add_argument(
        "--sigma",
        type=float,
        metavar="NM",
        help="registration kernel, in the store's localisation units (nm where it records "
        "the scale); default: the recorded localisation precision, at least 3 %% of "
        "the particles' median width",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="both",
        help="anneal: every particle against a template of all others, annealed EM; "
        "pairs: pairwise registrations, angular synchronisation, bootstrap; both (default): "
        "each, keeping the one whose particles fit each other better",
    )
    parser.add_argument("--angles", type=int, default=72, help="rotations tried (default 72)")
    parser.add_argument(
        "--rounds", type=int, default=12, help="anneal: annealing rounds (default 12)"
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="anneal: random starts, the one whose particles fit best kept (default 3)",
    )
    parser.add_argument(
        "--symmetry",
        type=int,
        default=1,
        metavar="N",
        help="anneal: the particles' N-fold rotational symmetry about their centre, declared "
        "(e.g. 8 for nuclear pores; must divide --angles); default 1, none",
    )
    parser.add_argument(
        "--sites",
        type=int,
        default=0,
        metavar="K",
        help="anneal: a template of K discrete sites of equal weight, in orbits of --symmetry "
        "(e.g. 8 for a pore's corners), for particles that each show a few sites; runs the "
        "annealing only; default 0, the free density of all particles",
    )
    parser.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="anneal: try each particle's mirror image too, for particles that may lie face "
        "down (default; twice the time); --no-mirror: turns only, as the pairs are",
    )
    parser.add_argument(
        "--partners", type=int, default=64, help="pairs: random partners per particle (default 64)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=5, help="pairs: bootstrap rounds (default 5)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random start (anneal) or partners (pairs)"
    )
    parser.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")


def _check_counts(args: argparse.Namespace) -> None:
    """The options that need no data, checked before the store is read."""
    for name, value, lo in (
        ("--angles", args.angles, 8),
        ("--partners", args.partners, 2),
        ("--rounds", args.rounds, 1),
        ("--starts", args.starts, 1),
    ):
        if value < lo:
            raise HollyError(f"{name} must be at least {lo}, not {value}")
    problem = fusion_prior_problem(args.symmetry, args.sites, args.method, args.angles)
    if problem:
        raise HollyError(f"--{problem[0]} {problem[1]}")
    if args.bootstrap < 0:
        raise HollyError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise HollyError(f"--sigma must be a positive length, not {args.sigma}")


def _params(args: argparse.Namespace, sigma: float) -> FusionParams:
    return FusionParams(
        sigma=sigma,
        n_angles=args.angles,
        partners=args.partners,
        bootstrap_rounds=args.bootstrap,
        method=args.method,
        anneal_rounds=args.rounds,
        anneal_starts=args.starts,
        symmetry=args.symmetry,
        sites=args.sites,
        mirror=args.mirror,
    )


def main(args: argparse.Namespace) -> int:
    if args.figure:
        from holly.results.figures import check_figure_path

        check_figure_path(args.figure, "--figure")
    refuse_inputs({"--out": args.out, "--figure": args.figure}, [args.store])
    _check_counts(args)
    locs = read_store_localisations(args.store)
    sigma = args.sigma if args.sigma is not None else default_sigma(locs)
    params = _params(args, sigma)
    n = len(locs.xy)
    log.info("fusing %d particles of %s (kernel %.3g %s)", n, args.store, sigma, locs.unit)
    record, fused = run_fusion(locs, params, args.seed, args.store)
    if args.figure:
        from holly.results.figures import fusion_figure, save_figure

        image, extent = fused_density(fused, pixel=sigma / 2, sigma=sigma / 2)
        save_figure(fusion_figure(image, extent, record), args.figure, args.dpi)
    write_fusion(args.out, record)  # last: the record says the fusion finished
    log.info(
        "fused %d particles: %s, extents %s %s (particles' own %s) -> %s",
        record["particles"],
        fusion_quality(record),
        record["fused_extents"],
        locs.unit,
        record["particle_extents"],
        args.out,
    )
    return 0
