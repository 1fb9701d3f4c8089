#!/usr/bin/env python3
"""Regenerate the README's results table: the workflow once per seed, then mean ± sd per experiment.

    python tools/results-table.py --seeds 0 1 2                 # the default experiments
    make results-table SEEDS="0 1 2"                            # the same
    python tools/results-table.py --seeds 1 2 --configfile my.yaml --cores 2
    python tools/results-table.py --seeds 1 2 3 --no-run        # only re-tabulate finished runs

Each seed runs `snakemake --cores N --configfile C OUT/seed-N.yaml`, where the small overlay
OUT/seed-N.yaml sets `results: OUT/seed-N` and `defaults: {seed: N}` (the seed of every
experiment that does not set its own; Snakemake merges the two files key by key), so the seeds'
results sit side by side under OUT (default results/seeds) and a finished seed is not rerun.
The markdown table goes to OUT/table.md and to stdout, with the command and commit to paste
next to it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from holly.errors import HollyError
from holly.results.seedtable import read_seed_summaries, seed_table


def snakemake_command(seed: int, out: Path, args: argparse.Namespace) -> list[str]:
    """The workflow run of one seed; writes its overlay config ``OUT/seed-N.yaml``."""
    overlay = out / f"seed-{seed}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    overlay.write_text(
        "# written by tools/results-table.py\n"
        + json.dumps({"results": str(out / f"seed-{seed}"), "defaults": {"seed": seed}})
        + "\n"
    )
    base = args.configfile or "config/config.yaml"
    cmd = ["snakemake", "--cores", str(args.cores), "--configfile", base, str(overlay)]
    return cmd + list(args.snakemake_args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--configfile", help="workflow config (default: config/config.yaml)")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--out", default="results/seeds", help="folder of the seeds' results")
    parser.add_argument("--no-run", action="store_true", help="only tabulate finished seeds")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    parser.add_argument("snakemake_args", nargs="*", help="after --: more snakemake options")
    args = parser.parse_args(argv)
    out = Path(args.out)
    commands = {seed: snakemake_command(seed, out, args) for seed in args.seeds}
    if args.dry_run:
        for cmd in commands.values():
            print(shlex.join(cmd))
        return 0
    timings = {}
    if not args.no_run:
        for seed, cmd in commands.items():
            print(f"seed {seed}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            if subprocess.run(cmd).returncode != 0:
                print(f"error: the workflow failed for seed {seed}", file=sys.stderr)
                return 1
            timings[seed] = time.perf_counter() - started
    try:
        table = seed_table(read_seed_summaries({s: out / f"seed-{s}" for s in args.seeds}))
    except HollyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    seeds = " ".join(map(str, args.seeds))
    note = (
        f"Mean ± standard deviation over seeds {seeds} (commit {commit or 'unknown'}); "
        f'regenerate with `make results-table SEEDS="{seeds}"`.\n'
    )
    if timings:
        note += (
            "Workflow wall time per seed: "
            + ", ".join(f"{s}: {t / 60:.1f} min" for s, t in timings.items())
            + ".\n"
        )
    text = table + "\n" + note
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
