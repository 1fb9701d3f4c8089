"""Training: the loop (:mod:`~holly.train.trainer`, around it :mod:`~holly.train.cadence`), the
amortised CNN phase (:mod:`~holly.train.amortised`, :mod:`~holly.train.cnnstep`,
:mod:`~holly.train.calibration`, :mod:`~holly.train.evaluation`), the per-image refinement stage
(:mod:`~holly.train.refinement`, :mod:`~holly.train.posesearch`), numeric precision and
compilation (:mod:`~holly.train.precision`) and the throughput benchmark
(:mod:`~holly.train.bench`). Never imports :mod:`holly.results`.

``from holly.train import train`` is the entry point: train (or resume) one experiment into a run
folder.
"""

from holly.train.trainer import train

__all__ = ["train"]
