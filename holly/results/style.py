"""Shared visual style: the colours every figure (:mod:`holly.results.figures`) and the 3D viewer
(:mod:`holly.results.viewer`) use, so a reconstruction looks the same everywhere.

Colour-blind-safe (ColorBrewer Dark2). Kept free of imports so both modules can use it without
importing each other.
"""

RECON_COLOUR = "#d95f02"  # reconstruction: orange
TRUTH_COLOUR = "#7570b3"  # ground truth: violet-blue
CYCLE = (RECON_COLOUR, TRUTH_COLOUR, "#1b9e77", "#e7298a", "#66a61e", "#e6ab02")
