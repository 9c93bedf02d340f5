"""Every forwarder option, from (first wins) the command line, the environment
(DATASTREAM_FORWARDER_<NAME>), the [forwarder] table of the instrument's config.toml, or the
default here. Topic names left empty follow the instrument: <INST>_forwarderConfig, ..."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from datastream.instrument import InstrumentConfig

ENV_PREFIX = "DATASTREAM_FORWARDER_"


class OptionError(ValueError):
    pass


@dataclass(frozen=True)
class ForwarderOptions:
    config_topic: str = ""
    storage_topic: str = ""
    status_topic: str = ""
    # off: the forwarder starts from its config file only and saves nothing
    use_storage: bool = True
    status_interval_s: float = 2.0
    periodic_interval_s: float = 5.0
    # watch <prefix>CS:BLOCKSERVER:BLOCKNAMES and forward the IBEX blocks
    ibex_blocks: bool = False
    # forward the DAE run-log PVs of the run-control IOC to <INST>_runLog
    run_log: bool = True
    # producer queue bound: past it updates are dropped and counted, never buffered unbounded
    queue_max_messages: int = 200_000
    queue_max_kbytes: int = 262_144
    # idempotent production: a retry after a lost acknowledgement (leader change, broker
    # restart) does not put an update in the topic twice
    idempotent: bool = True
    # /metrics, /healthz, /readyz over HTTP on this port (0: not served)
    metrics_port: int = 0

    def resolved(self, config: InstrumentConfig) -> ForwarderOptions:
        topics = config.topics
        return dataclasses.replace(
            self,
            config_topic=self.config_topic or topics.forwarder_config,
            storage_topic=self.storage_topic or topics.name("forwarderStorage"),
            status_topic=self.status_topic or topics.forwarder_status)


_HELP = {
    "config_topic": "topic of fc00/rf5k configuration commands",
    "storage_topic": "topic keeping the whole configuration for restarts",
    "status_topic": "topic of x5f2 status messages",
    "use_storage": "resume from / save to the storage topic",
    "status_interval_s": "seconds between status messages",
    "periodic_interval_s": "seconds between re-sends of periodic streams",
    "ibex_blocks": "forward the IBEX blocks listed by <prefix>CS:BLOCKSERVER:BLOCKNAMES",
    "run_log": "forward the DAE run-log PVs to <INST>_runLog",
    "queue_max_messages": "producer queue bound (messages)",
    "queue_max_kbytes": "producer queue bound (KiB)",
    "idempotent": "produce idempotently (no duplicate after a retry)",
    "metrics_port": "serve /metrics, /healthz and /readyz on this port (0: not served; "
                    "address from DATASTREAM_METRICS_HOST, default 127.0.0.1)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "forwarder options", f"also from the environment ({ENV_PREFIX}<NAME>) or the [forwarder] "
        "table of the config file")
    for f in fields(ForwarderOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=_HELP[f.name])
        else:
            group.add_argument(flag, dest=f.name, default=None, help=_HELP[f.name])


def _convert(name: str, kind: str, raw: object) -> object:
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a yes/no value")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"forwarder option {name}: {exc}") from exc


def resolve_options(args: argparse.Namespace | None, config_file: Path | None,
                    environ: dict[str, str] | None = None) -> ForwarderOptions:
    environ = os.environ if environ is None else environ
    table: dict[str, object] = {}
    if config_file is not None and config_file.exists():
        with open(config_file, "rb") as f:
            table = tomllib.load(f).get("forwarder", {})
    values: dict[str, object] = {}
    for f in fields(ForwarderOptions):
        cli = getattr(args, f.name, None) if args is not None else None
        env = environ.get(ENV_PREFIX + f.name.upper())
        for raw in (cli, env, table.get(f.name)):
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw)
                break
    return ForwarderOptions(**values)
