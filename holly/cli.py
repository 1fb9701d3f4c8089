"""The ``holly`` command line: one subcommand per module in :mod:`holly.commands`.

Each command module has a docstring (its help text), ``add_args(parser)`` and ``main(args)``.
User errors (:class:`holly.errors.HollyError`) become one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from holly import __version__
from holly.errors import HollyError

# name -> module under holly.commands; add one line per command.
COMMANDS = {
    "simulate": "simulate",
    "train": "train",
    "refine": "refine",
    "evaluate": "evaluate",
    "compare": "compare",
    "render": "render",
    "bench": "bench",
    "config-schema": "config_schema",
    "config-default": "config_default",
    "figures": "figures",
    "viewer": "viewer",
    "summarise": "summarise",
    "report": "report",
    "fetch": "fetch",
    "pick": "pick",
    "ingest": "ingest",
    "localise": "localise",
    "simulate-localisations": "simulate_localisations",
    "export": "export",
    "fuse": "fuse",
}

log = logging.getLogger("holly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holly",
        description="Reconstruct a 3D point cloud from 2D microscopy images with unknown poses "
        "(HOLLy). `holly COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"holly {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"holly.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"holly.commands.{module_name}":
                raise
            continue  # a command whose module is not installed in this checkout
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _bar_safe_logging():
    """On a terminal, log lines go through tqdm so they do not break a progress bar's line."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _os_error(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and what to check."""
    what = exc.strerror or str(exc)
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{what}: {paths}" if paths else what


_OUT_OF_MEMORY = (
    "out of memory: lower render.height / render.width (the image size), train.batch_size "
    "or data.particles (for refinement also refine.batch_size), or run on a machine with more "
    "memory"
)


def _is_out_of_memory(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or any(
        s in text for s in ("not enough memory", "out of memory", "can't allocate memory")
    )


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``holly`` console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        with _bar_safe_logging():
            result = args._main(args)
    except HollyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only, disk full, a file where a folder should be, ...
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # torch's allocators: "not enough memory", "out of memory"
        if not _is_out_of_memory(exc):
            raise
        print(f"error: {_OUT_OF_MEMORY} ({_first_line(exc)})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
