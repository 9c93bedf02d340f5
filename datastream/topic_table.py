"""The topic table (iocBoot/topics.toml, changed per instrument by iocBoot/<INST>/topics.toml):
for each ISIS topic suffix its partitions, replication factor and Kafka topic configuration."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from datastream.paths import IOCBOOT_DIR
from datastream.topics import TOPIC_SUFFIXES

DEFAULT_TABLE = IOCBOOT_DIR / "topics.toml"
AUTO = "auto"
# a production cluster replicates three times; a smaller cluster (the embedded broker) all it has
MAX_AUTO_REPLICATION = 3


class TopicTableError(ValueError):
    """A table that cannot be used as written; the message names the file and the entry."""


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    partitions: int
    replication: int | None  # None: "auto"
    configs: dict[str, str]  # "min.insync.replicas" may be "auto"

    def replication_for(self, brokers: int) -> int:
        if self.replication is None:
            return max(1, min(MAX_AUTO_REPLICATION, brokers))
        return self.replication

    def configs_for(self, brokers: int) -> dict[str, str]:
        out = dict(self.configs)
        if out.get("min.insync.replicas") == AUTO:
            out["min.insync.replicas"] = str(max(1, self.replication_for(brokers) - 1))
        return out


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise TopicTableError(f"{path}: cannot read the topic table: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopicTableError(f"{path}: not valid TOML: {exc}") from exc
    for name, entry in doc.items():
        if name != "defaults" and name not in TOPIC_SUFFIXES:
            raise TopicTableError(
                f"{path}: unknown topic [{name}]; the topics are: {', '.join(TOPIC_SUFFIXES)}")
        if not isinstance(entry, dict):
            raise TopicTableError(f"{path}: {name} must be a table ([{name}])")
    return doc


def _spec(suffix: str, entry: dict[str, object], where: str) -> TopicSpec:
    entry = dict(entry)
    partitions = entry.pop("partitions", 1)
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise TopicTableError(f"{where}: [{suffix}] partitions must be a whole number >= 1, "
                              f"not {partitions!r}")
    replication = entry.pop("replication", AUTO)
    if replication != AUTO and (not isinstance(replication, int)
                                or isinstance(replication, bool) or replication < 1):
        raise TopicTableError(f"{where}: [{suffix}] replication must be \"auto\" or a whole "
                              f"number >= 1, not {replication!r}")
    configs: dict[str, str] = {}
    for key, value in entry.items():
        if isinstance(value, dict | list | bool):
            raise TopicTableError(f"{where}: [{suffix}] {key} must be a string or a number "
                                  "(Kafka's own spelling, e.g. \"604800000\")")
        configs[key] = str(value)
    return TopicSpec(suffix, partitions, None if replication == AUTO else int(replication),
                     configs)


def load_table(instrument_table: Path | None = None,
               shared: Path = DEFAULT_TABLE) -> dict[str, TopicSpec]:
    """suffix -> spec: the shared table, with what the instrument's own table lists replacing
    its entries key by key (an instrument's [defaults] apply to every topic)."""
    base = _read(shared)
    own = _read(instrument_table) if instrument_table is not None else {}
    where = f"{shared}" + (f" + {instrument_table}" if instrument_table else "")
    specs: dict[str, TopicSpec] = {}
    for suffix in TOPIC_SUFFIXES:
        merged = {**base.get("defaults", {}), **base.get(suffix, {}),
                  **own.get("defaults", {}), **own.get(suffix, {})}
        specs[suffix] = _spec(suffix, merged, where)
    return specs


def instrument_table_file(config_dir: Path | None, named: Path | None) -> Path | None:
    """The instrument's own table: the file its config names, else topics.toml beside its
    config.toml if there is one."""
    if named is not None:
        return named
    if config_dir is not None and (config_dir / "topics.toml").is_file():
        return config_dir / "topics.toml"
    return None
