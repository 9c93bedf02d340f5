"""Where a job's file may go: inside the writer's data dir, and nowhere else.

A run start names its file; the name comes from the network, so it is checked like any
other untrusted path: no absolute path, no `..`, no NUL, and no symlink (of a folder on the
way) that leads out of the data dir. Subfolders of the data dir are fine.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """The file name would put the file outside the data dir (or is no file name at all)."""


def resolve_output(output_dir: Path, filename: str) -> Path:
    """The absolute path of `filename` inside `output_dir`, or UnsafePath saying why not."""
    if not filename or not filename.strip():
        raise UnsafePath("the file name is empty")
    if "\x00" in filename:
        raise UnsafePath("the file name holds a NUL character")
    name = PurePosixPath(filename)
    if name.is_absolute():
        raise UnsafePath(f"file name {filename!r} is absolute: give it relative to the data dir")
    if ".." in name.parts:
        raise UnsafePath(f"file name {filename!r} climbs out with '..'")
    if filename.endswith("/") or name.name in ("", "."):
        raise UnsafePath(f"file name {filename!r} names a folder, not a file")
    root = output_dir.resolve()
    path = root.joinpath(*name.parts)
    # symlinks are resolved (strict=False: the file itself does not exist yet), so a linked
    # folder pointing elsewhere is caught here
    if not path.resolve().is_relative_to(root):
        raise UnsafePath(f"file name {filename!r} leads outside the data dir through a "
                         "symbolic link")
    return path
