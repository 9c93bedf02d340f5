"""How much more a file may grow: the free space of its filesystem and the process's own
file-size limit (RLIMIT_FSIZE), whichever is less.

HDF5 cannot be trusted once a write has failed: it may have grown a dataset's extent and
not written its data (zeros read back), or left the file's end-of-file mark past its real
end. So the writer checks before it writes, and stops cleanly while there is still room
to close the file.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

# room kept for closing the file: HDF5's metadata, the end time, the log statistics
CLOSE_RESERVE_BYTES = 4 * 1024 * 1024


class DiskFull(OSError):
    """Writing on would fill the disk (or pass the file-size limit); the file was closed
    with everything before it."""


def room_left(path: Path) -> int:
    """Bytes `path` (an existing file) may still grow by."""
    stat = os.statvfs(path.parent)
    room = stat.f_bavail * stat.f_frsize
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        room = min(room, soft - path.stat().st_size)
    return room


def check_room(path: Path, pending_bytes: int) -> None:
    """DiskFull unless `pending_bytes` more, and the reserve for closing, fit."""
    room = room_left(path)
    # chunked datasets may take a partly filled chunk per dataset beyond the data itself
    needed = int(pending_bytes * 1.1) + CLOSE_RESERVE_BYTES
    if room < needed:
        raise DiskFull(f"disk full: {room // 1024} KiB left for {path.name}, "
                       f"{needed // 1024} KiB needed to write on and close it")
