"""An instrument's start-up configuration (iocBoot/<INST>/config.toml) with command-line
overrides: the macros every service shares."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from datastream.geometry import Geometry, load_geometry
from datastream.paths import DEFAULT_DATA_DIR, IOCBOOT_DIR, REPO_ROOT
from datastream.streams import LogStream, load_streams
from datastream.topic_table import TopicSpec, instrument_table_file, load_table
from datastream.topics import InstrumentTopics

DEFAULT_INSTRUMENT = "DEMO"


@dataclass(frozen=True)
class InstrumentConfig:
    name: str = DEFAULT_INSTRUMENT
    prefix: str = f"IN:{DEFAULT_INSTRUMENT}:"
    broker: str = "127.0.0.1:9092"
    data_dir: Path = DEFAULT_DATA_DIR
    # the [dae] table, handed to the DAE, which validates it (ioc.simulated_dae.DaeSettings)
    dae: dict[str, object] = field(default_factory=dict)
    sample_env_db: Path | None = None
    streams_file: Path | None = None
    end_timeout_s: float = 60.0
    # EPICS access security of the run-control IOC (ACF); None: only this host may write
    access_security: Path | None = None
    # the [liveview] table: time channels (tof_min_ns, tof_max_ns, channels, logarithmic)
    liveview: dict[str, object] = field(default_factory=dict)
    # the instrument's own topic table, changing the shared iocBoot/topics.toml
    topic_table_file: Path | None = None
    # iocBoot/<INST>/geometry.toml: source, sample, detector banks, monitors
    geometry_file: Path | None = None

    def geometry(self) -> Geometry | None:
        return load_geometry(self.geometry_file) if self.geometry_file else None

    @property
    def topics(self) -> InstrumentTopics:
        return InstrumentTopics(self.name)

    @property
    def files_dir(self) -> Path:
        """Where the NeXus files go: the data dir itself, beside broker/, logs/, runinfo/."""
        return self.data_dir

    @property
    def macros(self) -> dict[str, str]:
        return {"P": self.prefix, "INSTRUMENT": self.name}

    def time_channels(self) -> tuple[float, float, int, bool]:
        """(tof_min_ns, tof_max_ns, channels, logarithmic) of [liveview], by default one frame
        of the DAE in 1000 linear channels: the live view's binning until the DAE's TCB
        says otherwise, and the DAE's TCB until one is set."""
        table = self.liveview
        frame_ns = 1e9 / float(self.dae.get("frame_rate_hz", 10.0))  # type: ignore[arg-type]
        return (float(table.get("tof_min_ns", 0.0)),  # type: ignore[arg-type]
                float(table.get("tof_max_ns", frame_ns)),  # type: ignore[arg-type]
                int(table.get("channels", 1000)),  # type: ignore[call-overload]
                bool(table.get("logarithmic", False)))

    def topic_table(self) -> dict[str, TopicSpec]:
        return load_table(self.topic_table_file)

    def streams(self) -> list[LogStream]:
        if self.streams_file is None:
            return []
        return load_streams(self.streams_file, self.topics.sample_env, self.macros)


def _resolve(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: Path) -> InstrumentConfig:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    inst = doc.get("instrument", {})
    name = inst.get("name", DEFAULT_INSTRUMENT)
    base = path.parent
    data_dir = _resolve(REPO_ROOT, inst.get("data_dir")) or DEFAULT_DATA_DIR
    return InstrumentConfig(
        name=name,
        prefix=inst.get("prefix", f"IN:{name}:"),
        broker=doc.get("kafka", {}).get("broker", "127.0.0.1:9092"),
        data_dir=data_dir,
        dae=dict(doc.get("dae", {})),
        sample_env_db=_resolve(base, doc.get("sample_env", {}).get("db")),
        streams_file=_resolve(base, doc.get("forwarder", {}).get("streams")),
        end_timeout_s=float(doc.get("run_control", {}).get("end_timeout_s", 60.0)),
        access_security=_resolve(base, doc.get("run_control", {}).get("access_security")),
        liveview=dict(doc.get("liveview", {})),
        topic_table_file=instrument_table_file(
            base, _resolve(base, doc.get("kafka", {}).get("topics"))),
        geometry_file=_resolve(base, inst.get("geometry")),
    )


def write_config(config: InstrumentConfig, path: Path) -> Path:
    """The config.toml that load_config reads back as `config` (tests and benchmarks make
    their instruments this way)."""
    def value(v: object) -> str:
        # JSON scalars (quoted strings, numbers, true/false) and arrays of them are valid
        # TOML values; a dict is an inline table
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v) if isinstance(v, Path) else v)

    def table(name: str, values: dict[str, object]) -> str:
        return f"[{name}]\n" + "".join(f"{k} = {value(v)}\n"
                                        for k, v in values.items() if v is not None)

    path.write_text("".join([
        table("instrument", {"name": config.name, "prefix": config.prefix,
                             "data_dir": config.data_dir, "geometry": config.geometry_file}),
        table("kafka", {"broker": config.broker, "topics": config.topic_table_file}),
        table("run_control", {"end_timeout_s": config.end_timeout_s,
                              "access_security": config.access_security}),
        table("dae", config.dae),
        table("sample_env", {"db": config.sample_env_db}),
        table("forwarder", {"streams": config.streams_file}),
        table("liveview", config.liveview),
    ]))
    return path


def add_instrument_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("instrument")
    group.add_argument("--config", type=Path,
                       default=os.environ.get("DATASTREAM_CONFIG",
                                              IOCBOOT_DIR / DEFAULT_INSTRUMENT / "config.toml"),
                       help="instrument start-up config (iocBoot/<INST>/config.toml)")
    group.add_argument("--instrument", help="instrument name, e.g. DEMO (overrides the config)")
    group.add_argument("--prefix", help="PV prefix, e.g. IN:DEMO: (overrides the config)")
    group.add_argument("--data-dir", type=Path, help="where files, run numbers and broker data go")


def config_from_args(args: argparse.Namespace) -> InstrumentConfig:
    config = load_config(Path(args.config))
    if args.instrument:
        prefix = args.prefix or f"IN:{args.instrument}:"
        config = replace(config, name=args.instrument, prefix=prefix)
    elif args.prefix:
        config = replace(config, prefix=args.prefix)
    if not config.prefix.endswith(":"):
        config = replace(config, prefix=config.prefix + ":")
    if args.data_dir:
        config = replace(config, data_dir=args.data_dir.resolve())
    if getattr(args, "broker", None):
        config = replace(config, broker=args.broker)
    return config
