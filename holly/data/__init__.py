"""Data: shapes, images and localisations, and where they come from.

Every file format holly reads or writes for its inputs has one owner module here: point clouds
(:mod:`~holly.data.pointio`), the Zarr image store (:mod:`~holly.data.imagestore`, read by
:mod:`~holly.data.shardreader`), single images and FITS (:mod:`~holly.data.imageio`), localisation
tables (:mod:`~holly.data.locformats`), sigma lists (:mod:`~holly.data.sigmas`, shipped as the
``sigma_*.csv`` files in this folder), Zenodo records and archives (:mod:`~holly.data.zenodo`,
:mod:`~holly.data.archive`). The training data (:mod:`~holly.data.datasets`), simulated or from a
store, and the half-set split (:mod:`~holly.data.halves`) are built here too. Imports the base
modules and :mod:`holly.method`, never the run folder, training or results.
"""
