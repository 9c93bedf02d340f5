"""Where a job's file may go: inside the writer's data dir, and nowhere else.

A run start names its file; the name comes from the network, so it is checked like any
other untrusted path: no absolute path, no `..`, no NUL or other control character, no
Unicode bidi control, no name too long for the filesystem, nothing in the services' own
folders of the data dir, and no symlink (of a folder on the way) that leads out of the data
dir. Subfolders of the data dir are fine.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# the data dir's folders the services keep their state in: a file (or folder) made there
# could take the place of the run-number store a fresh instrument's IOC is about to create,
# or pass for a job of the writer's journal; `up` keeps the embedded broker's data, the
# services' logs and the Prometheus config there too
SERVICE_DIRS = frozenset({"runinfo", ".filewriter-jobs", "broker", "logs", "prometheus"})
# C0 controls and DEL: a name holding them garbles logs, terminals and the IOC's PVs
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# bidi embeddings, overrides and isolates: they make a name read as another one
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# NAME_MAX of Linux filesystems, less the ".partial" a resumed job renames the file to
NAME_MAX_BYTES = 255 - len(".partial")
PATH_MAX_BYTES = 4095


class UnsafePath(ValueError):
    """The file name would put the file outside the data dir (or is no file name at all)."""


def check_name(filename: str) -> None:
    """UnsafePath unless `filename` is a name a file may have, wherever the data dir is."""
    if not filename or not filename.strip():
        raise UnsafePath("the file name is empty")
    if "\x00" in filename:
        raise UnsafePath("the file name holds a NUL character")
    if _CONTROL.search(filename):
        raise UnsafePath(f"file name {filename!r} holds a control character")
    if _BIDI.search(filename):
        raise UnsafePath(f"file name {filename!r} holds a Unicode bidi control character")
    try:
        encoded = filename.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no file system name
        raise UnsafePath(f"file name {filename!r} is not valid Unicode") from exc
    if len(encoded) > PATH_MAX_BYTES:
        raise UnsafePath(f"file name of {len(encoded)} bytes is too long")
    name = PurePosixPath(filename)
    if name.is_absolute():
        raise UnsafePath(f"file name {filename!r} is absolute: give it relative to the data dir")
    if ".." in name.parts:
        raise UnsafePath(f"file name {filename!r} climbs out with '..'")
    if filename.endswith("/") or name.name in ("", "."):
        raise UnsafePath(f"file name {filename!r} names a folder, not a file")
    if name.parts[0].casefold() in SERVICE_DIRS:
        raise UnsafePath(f"file name {filename!r} lies in the services' folder "
                         f"{name.parts[0]}/ of the data dir")
    for part in name.parts:
        if len(part.encode("utf-8")) > NAME_MAX_BYTES:
            raise UnsafePath(f"file name {filename[:40]!r}…: a part of it is longer than "
                             f"{NAME_MAX_BYTES} bytes")


def resolve_output(output_dir: Path, filename: str) -> Path:
    """The absolute path of `filename` inside `output_dir`, or UnsafePath saying why not."""
    check_name(filename)
    name = PurePosixPath(filename)
    root = output_dir.resolve()
    path = root.joinpath(*name.parts)
    # symlinks are resolved (strict=False: the file itself does not exist yet), so a linked
    # folder pointing elsewhere is caught here
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePath(f"file name {filename!r} leads outside the data dir through a "
                         "symbolic link")
    # resolved, so a link inside the data dir pointing at a service folder is caught too;
    # casefolded for a data dir on a case-insensitive filesystem
    inside = resolved.relative_to(root).parts
    if not inside:
        raise UnsafePath(f"file name {filename!r} names the data dir itself")
    first = inside[0]
    if first.casefold() in SERVICE_DIRS:
        raise UnsafePath(f"file name {filename!r} lies in the services' folder {first}/ of "
                         "the data dir")
    return path
