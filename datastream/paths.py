"""Where the project's own files live, for the defaults of a checkout installed with -e."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "var"
CACHE_DIR = REPO_ROOT / ".cache"
DB_DIR = REPO_ROOT / "db"
IOCBOOT_DIR = REPO_ROOT / "iocBoot"
