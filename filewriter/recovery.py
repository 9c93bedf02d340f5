"""Making a file left by a killed writer readable by every reader.

A writer killed while writing leaves HDF5's "open for write" flags set in the superblock, so
a reader that does not ask for SWMR (scippnexus, Mantid, h5dump) refuses the file. HDF5's
h5clear tool clears them but is not in the h5py wheels; it does so by opening the file with
the file-access property "clear_status_flags", which h5py does not expose. So the property
is set through the HDF5 library h5py itself loaded.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import h5py


class RecoveryError(Exception):
    pass


def _loaded_hdf5() -> ctypes.CDLL:
    """The libhdf5 in this process (the one h5py links), not some other copy on disk:
    property lists are only valid in the library that made them."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError as exc:
        raise RecoveryError(f"finding the HDF5 library h5py loaded needs Linux's /proc: {exc}"
                            ) from exc
    for line in lines:
        path = line.split()[-1]
        name = Path(path).name
        if name.startswith("libhdf5") and not name.startswith("libhdf5_hl"):
            return ctypes.CDLL(path)
    raise RecoveryError("cannot find the HDF5 library h5py loaded")


def needs_clearing(path: Path) -> bool:
    try:
        with h5py.File(path, "r"):
            return False
    except OSError as exc:
        if "already open for write" in str(exc):
            return True
        raise


def clear_status_flags(path: Path) -> bool:
    """Clear the flags if they are set; True if they were. The data are as the writer last
    flushed them."""
    if not needs_clearing(path):
        return False
    lib = _loaded_hdf5()
    lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
    lib.H5Pset.restype = ctypes.c_int
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    clear = ctypes.c_bool(True)
    if lib.H5Pset(fapl.id, b"clear_status_flags", ctypes.byref(clear)) < 0:
        raise RecoveryError("this HDF5 library has no clear_status_flags property")
    try:
        h5py.h5f.open(str(path).encode(), h5py.h5f.ACC_RDWR, fapl=fapl).close()
    except OSError as exc:
        raise RecoveryError(f"cannot clear {path}: {exc}") from exc
    return True
