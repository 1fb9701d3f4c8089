"""Write MATLAB v7.3 MAT-files with h5py, laid out as MATLAB lays them out (test fixtures only).

What MATLAB does, and this module copies: a 512-byte user block whose first 128 bytes are the
text header ``MATLAB 7.3 MAT-file, Platform: ..., Created on: ... HDF5 schema 1.00 .`` padded
with spaces to 116 bytes, 8 bytes of subsystem offset, version ``0x0200`` and the endian mark
``IM``; every variable carries ``MATLAB_class``; dimensions are stored reversed (an ``n x 1``
column vector is an HDF5 ``(1, n)`` dataset); ``char`` arrays are uint16 code units with
``MATLAB_int_decode = 2``; a struct is a group; a cell array, and every field of a struct
*array*, is a dataset of object references into the hidden group ``#refs#``; empty arrays are a
uint64 dims vector with ``MATLAB_empty = 1``.
"""

from __future__ import annotations

import h5py
import numpy as np

HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 10:00:00 2026 "
    b"HDF5 schema 1.00 ."
)


class MatFile:
    def __init__(self, path):
        self.path = path
        self.f = h5py.File(path, "w", userblock_size=512)
        self.refs = self.f.create_group("#refs#")
        self._n = 0
        # MATLAB keeps a canonical empty array at #refs#/a
        a = self.refs.create_dataset("a", data=np.array([0, 0], dtype=np.uint64))
        a.attrs["MATLAB_class"] = np.bytes_("double")
        a.attrs["MATLAB_empty"] = np.uint8(1)

    def close(self):
        self.f.close()
        header = HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        with open(self.path, "r+b") as fh:
            fh.write(header)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _ref_name(self) -> str:
        self._n += 1
        name, n = "", self._n
        while n:  # b, c, ..., z, ba, ... (MATLAB's names in #refs#)
            n, r = divmod(n, 26)
            name = "abcdefghijklmnopqrstuvwxyz"[r] + name
        return name

    def put(self, group, name: str, value):
        """Write ``value`` as MATLAB would: dict = struct, list = cell (1 x n), str = char,
        numbers = double (a 1-D array is a column vector), ``("struct_array", [dicts])``."""
        if isinstance(value, dict):
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            for key, v in value.items():
                self.put(g, key, v)
            return g
        if isinstance(value, tuple) and value[0] == "struct_array":
            elements = value[1]
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            for key in elements[0]:
                refs = [self._anon(e[key]).ref for e in elements]
                ds = g.create_dataset(key, (len(refs), 1), dtype=h5py.ref_dtype)
                ds[:, 0] = refs
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            return g
        if isinstance(value, list):
            refs = [self._anon(v).ref for v in value]
            ds = group.create_dataset(name, (len(refs), 1), dtype=h5py.ref_dtype)
            ds[:, 0] = refs
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
            return ds
        if isinstance(value, str):
            codes = np.array([ord(c) for c in value], dtype=np.uint16)[:, None]  # 1 x L -> (L, 1)
            ds = group.create_dataset(name, data=codes)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
            return ds
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 0:
            ds = group.create_dataset(name, data=np.array([0, 0], dtype=np.uint64))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr[None, :]  # n x 1 column vector, stored reversed as (1, n)
        else:
            arr = arr.T  # MATLAB's column-major m x n is HDF5's (n, m)
        ds = group.create_dataset(name, data=arr)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        return ds

    def _anon(self, value):
        return self.put(self.refs, self._ref_name(), value)

    def matrix_rows(self, name: str, rows: np.ndarray):
        """A MATLAB m x n matrix whose HDF5 dataset is ``rows`` as given (shape (n, m))."""
        ds = self.f.create_dataset(name, data=rows)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        return ds
