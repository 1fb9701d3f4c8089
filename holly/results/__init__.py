"""Results: scores (:mod:`~holly.results.evaluate`, :mod:`~holly.results.structure`,
:mod:`~holly.results.views`), half-set validation and FSC (:mod:`~holly.results.halfsets`,
:mod:`~holly.results.fsc`), figures, the 3D viewer and the report (:mod:`~holly.results.figures`,
:mod:`~holly.results.viewer`, :mod:`~holly.results.report`), the experiments' ``summary.csv``
(:mod:`~holly.results.summary`, its one writer and reader), the README's seed table
(:mod:`~holly.results.seedtable`) and the shared colours (:mod:`~holly.results.style`). Reads run
folders; never imports :mod:`holly.train`.
"""
