"""What a run reports while it trains: ``metrics.csv`` rows, each also logged as a line with an
ETA (for log files, Snakemake's, where there is no progress bar), and a progress bar when
stderr is a terminal.
"""

from __future__ import annotations

import logging
import math
import sys
import time

from holly.run.runfolder import RunFolder

log = logging.getLogger(__name__)


class MetricsLog:
    """``metrics.csv``, one row per log step, each also logged as a line with an ETA; on resume
    (``first_step`` > 0), rows after the checkpoint are dropped. Its clock times the rows'
    throughput from ``first_step`` on, of a run of ``total_steps``; ``tick`` moves the progress
    bar (when there is one) by a step."""

    def __init__(self, run: RunFolder, first_step: int, total_steps: int):
        self.run, self.first_step, self.total_steps = run, first_step, total_steps
        run.start_metrics(run.metric_rows(first_step) if first_step else [])
        self.bar = progress_bar(total_steps, first_step)
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def tick(self) -> None:
        if self.bar:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar:
            self.bar.close()

    def append(self, row: dict) -> None:
        self.run.append_metrics(row)
        step = row["step"]
        eta = row["elapsed_s"] / (step - self.first_step) * (self.total_steps - step)
        # the refinement has no held-out loss (the CNN's is not what it fits): say so, not "nan"
        test = row["test_loss"]
        log.info(
            "step %d/%d loss %.2f test %s sigma %.2f (pred %.2f) %.0f img/s, ETA %s",
            step,
            self.total_steps,
            row["train_loss"],
            f"{test:.2f}" if math.isfinite(test) else "- (refinement)",
            row["sigma_in"],
            row["sigma_pred_mean"],
            row["images_per_s"],
            duration_text(eta),
        )


def duration_text(seconds: float) -> str:
    """``"45s"``, ``"3m12s"`` or ``"2h05m"``: a short, human duration (rounded down)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_bar(total: int, start: int):
    """A tqdm bar of ``total`` steps from ``start``, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
