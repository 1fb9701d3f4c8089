"""The run folder: every file a run writes (:mod:`~holly.run.runfolder`), the checkpoint format and
its resume rules (:mod:`~holly.run.checkpoint`) and provenance (:mod:`~holly.run.provenance`).
Imports base, method and data; training and results both build on it.
"""
