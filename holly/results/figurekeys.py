"""The names of the figures made of one run: the files ``figures/<key>.<format>`` of a run folder.

Kept apart from :mod:`holly.results.figures`, and importing nothing: the workflow names its
figure outputs from these keys while Snakemake parses it, where importing the figures module
(matplotlib, and torch through the run folder) would cost more than a second, on every
invocation.
"""

# Made for every run (holly figures; :func:`holly.results.figures.run_figures`).
RUN_FIGURES = ("loss", "sigma", "montage", "views", "pose_error")

# Made on request (holly figures --only; :func:`holly.results.figures.extra_figures`).
EXTRA_FIGURES = ("evolution", "vs_published", "learning_curve", "view_tilts", "fusion")
