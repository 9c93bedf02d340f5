"""just-bin-it's JSON commands, as NICOS sends them to its command topic: `config` (the
histograms to make and the time to count), `stop` and `reset_counts`. Parsed and checked
here before anything acts on them, so a bad command is answered ERR with its reason and
changes nothing. Pure: JSON in, a command out.

The forms accepted are just-bin-it's, old and new: data_brokers/data_topics at the top or
in each histogram; start/stop in ms since the epoch, or interval in s (not both); input_schema
ev44 (default) or ev42; output_schema hs00 (default, just-bin-it's) or hs01."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any

from datastream.kafka_client import MAX_MESSAGE_BYTES

HIST_TYPES = ("hist1d", "hist2d", "dethist", "roihist")
INPUT_SCHEMAS = ("ev44", "ev42")
OUTPUT_SCHEMAS = ("hs00", "hs01")
# Every number of a command is bounded, because Python's json reads Infinity, NaN and
# integers of thousands of digits, and an OverflowError in the command thread once ended the
# live view. Each histogram's hs00/hs01 (float64 counts and edges) must fit one Kafka message
# (the topics' max.message.bytes, 64 MiB, less room for its info JSON and framing); all of
# one config's histograms together at most MAX_TOTAL_BINS (128 MiB of float64; the old
# session and the new one are both held for a moment while a config replaces it, so the
# just-bin-it side never holds more than twice that).
MESSAGE_MARGIN_BYTES = 1024 * 1024
MAX_BINS = (MAX_MESSAGE_BYTES - MESSAGE_MARGIN_BYTES) // 8
MAX_TOTAL_BINS = 16 * 1024 * 1024
MAX_HISTOGRAMS = 64
MAX_DATA_TOPICS = 16
MAX_ID_CHARS = 256  # msg_id, id, source: names, not documents
# times in ms since the epoch that stay within an int64 of ns (the year 2262)
MAX_TIME_MS = (2**63 - 1) // 1_000_000
MAX_INTERVAL_S = 10 * 365 * 86400.0
# time of flight in ns, and detector ids (an ev42's are uint32)
MAX_ABS_TOF_NS = 1e15
MAX_ABS_DET_ID = 2**32
# the narrowest bin: any narrower and (value - low) * bins / (high - low) is not finite
MIN_BIN_WIDTH = 1e-6


class CommandError(ValueError):
    """The command cannot be carried out; the message says why (sent back as ERR)."""


@dataclass(frozen=True)
class HistSpec:
    type: str
    topic: str
    data_topics: tuple[str, ...]
    tof_range: tuple[float, float] | None = None
    det_range: tuple[int, int] | None = None
    num_bins: int | tuple[int, int] | None = None
    width: int = 512
    height: int = 512
    left_edges: tuple[int, ...] = ()
    source: str = ""
    id: str = ""


@dataclass(frozen=True)
class Command:
    cmd: str  # config | stop | reset_counts
    msg_id: str | None = None
    start_ms: int | None = None
    stop_ms: int | None = None
    interval_s: float | None = None
    input_schema: str = "ev44"
    output_schema: str = "hs00"
    histograms: tuple[HistSpec, ...] = field(default_factory=tuple)

    def window(self, now_ms: int) -> tuple[int, int | None]:
        """(start, stop) in ms: `interval` counts from now; no start means from now."""
        if self.interval_s is not None:
            return now_ms, now_ms + int(self.interval_s * 1000)
        return (self.start_ms if self.start_ms is not None else now_ms), self.stop_ms


def _load(payload: bytes) -> Any:
    """The JSON; RecursionError (nesting past the parser's limit) is no ValueError."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CommandError(f"not JSON: {str(exc)[:200]}") from None


def _msg_id(message: dict[str, Any]) -> str | None:
    value = message.get("msg_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None  # a list or object is no id: nothing to answer it with
    try:
        return str(value)[:MAX_ID_CHARS]
    except ValueError:  # an int past Python's digit limit (json refuses those first)
        return None


def msg_id_of(payload: bytes) -> str | None:
    """The msg_id of a command, even of one that is otherwise invalid (so it can be
    answered); None if there is none or the payload is not a JSON object."""
    try:
        message = _load(payload)
    except CommandError:
        return None
    return _msg_id(message) if isinstance(message, dict) else None


def parse_command(payload: bytes) -> Command:
    message = _load(payload)
    if not isinstance(message, dict):
        raise CommandError("a command is a JSON object")
    msg_id = _msg_id(message)
    cmd = message.get("cmd")
    if cmd in ("stop", "reset_counts"):
        return Command(cmd, msg_id)
    if cmd != "config":
        raise CommandError(f"unknown command type {cmd!r}")
    return _parse_config(message, msg_id)


def _time_ms(message: dict[str, Any], key: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    if not _number(value) or not 0 <= value <= MAX_TIME_MS:
        raise CommandError(f"{key} must be a time in ms since the epoch, from 0 to "
                           f"{MAX_TIME_MS}")
    return int(value)


def _parse_config(message: dict[str, Any], msg_id: str | None) -> Command:
    start, stop = _time_ms(message, "start"), _time_ms(message, "stop")
    interval = message.get("interval")
    if interval is not None:
        if start is not None or stop is not None:
            raise CommandError("cannot define 'interval' in combination with start and/or "
                               "stop")
        if not _number(interval) or not 0 < interval <= MAX_INTERVAL_S:
            raise CommandError(f"interval must be a positive number of seconds, at most "
                               f"{MAX_INTERVAL_S:.0f}")
    if start is not None and stop is not None and stop < start:
        raise CommandError("stop is before start")
    input_schema = message.get("input_schema", "ev44")
    if input_schema not in INPUT_SCHEMAS:
        raise CommandError(f"input_schema {input_schema!r} is not one of {INPUT_SCHEMAS}")
    output_schema = message.get("output_schema", "hs00")
    if output_schema not in OUTPUT_SCHEMAS:
        raise CommandError(f"output_schema {output_schema!r} is not one of {OUTPUT_SCHEMAS}")
    hists = message.get("histograms")
    if not isinstance(hists, list) or not hists:
        raise CommandError("a config needs a non-empty list of histograms")
    if len(hists) > MAX_HISTOGRAMS:
        raise CommandError(f"{len(hists)} histograms: at most {MAX_HISTOGRAMS}")
    top_topics = message.get("data_topics")
    specs = tuple(_parse_histogram(h, i, top_topics) for i, h in enumerate(hists))
    total = sum(bins_of(s) for s in specs)
    if total > MAX_TOTAL_BINS:
        raise CommandError(f"{total:,} bins in all: at most {MAX_TOTAL_BINS:,} a config")
    return Command("config", msg_id, start, stop,
                   float(interval) if interval is not None else None,
                   input_schema, output_schema, specs)


def _parse_histogram(h: object, index: int, top_topics: object) -> HistSpec:
    where = f"histogram {index}"
    if not isinstance(h, dict):
        raise CommandError(f"{where} is not a JSON object")
    kind = h.get("type")
    if kind not in HIST_TYPES:
        raise CommandError(f"{where}: type {kind!r} is not one of {HIST_TYPES}")
    where = f"{where} ({kind})"
    topic = h.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise CommandError(f"{where}: no output topic")
    data_topics = h.get("data_topics", top_topics)
    if (not isinstance(data_topics, list) or not data_topics
            or len(data_topics) > MAX_DATA_TOPICS
            or not all(isinstance(t, str) and t for t in data_topics)):
        raise CommandError(f"{where}: data_topics must be a non-empty list of topic names "
                           f"(at most {MAX_DATA_TOPICS})")
    source = h.get("source") or ""
    identifier = h.get("id") or ""
    if not isinstance(source, str) or not isinstance(identifier, str):
        raise CommandError(f"{where}: source and id are strings")
    if len(source) > MAX_ID_CHARS or len(identifier) > MAX_ID_CHARS:
        raise CommandError(f"{where}: source and id of at most {MAX_ID_CHARS} characters")
    tof = _range(h, "tof_range", where, required=kind in ("hist1d", "hist2d"),
                 limit=MAX_ABS_TOF_NS)
    det = _range(h, "det_range", where, required=kind in ("hist2d", "dethist"),
                 limit=MAX_ABS_DET_ID)
    ids = (int(det[0]), int(det[1])) if det else None
    if kind == "hist2d" and ids is not None and not ids[1] > ids[0]:
        raise CommandError(f"{where}: det_range must span more than one detector id")
    spec = HistSpec(kind, topic, tuple(data_topics), tof, ids, source=source, id=identifier)
    if kind == "hist1d":
        bins: int | tuple[int, int] = _bins(h.get("num_bins"), where, pair=False)
        return _sized(replace(spec, num_bins=bins), int(bins), where)  # type: ignore[arg-type]
    if kind == "hist2d":
        bins = _bins(h.get("num_bins"), where, pair=True)
        nx, ny = bins if isinstance(bins, tuple) else (bins, bins)
        return _sized(replace(spec, num_bins=bins), nx * ny, where)
    width = _positive_int(h.get("width", 512), "width", where)
    if kind == "dethist":
        height = _positive_int(h.get("height", 512), "height", where)
        return _sized(replace(spec, width=width, height=height), width * height, where)
    edges = h.get("left_edges")
    if (not isinstance(edges, list) or not edges or len(edges) > MAX_BINS
            or not all(isinstance(e, int) and not isinstance(e, bool)
                       and abs(e) <= MAX_ABS_DET_ID for e in edges)):
        raise CommandError(f"{where}: left_edges must be a non-empty list of detector ids "
                           f"(within +-{MAX_ABS_DET_ID})")
    return _sized(replace(spec, width=width, left_edges=tuple(edges)), width * len(edges),
                  where)


def dims_of(spec: HistSpec) -> tuple[int, ...]:
    """The histogram's shape (as liveview.jbi_histograms makes it)."""
    if spec.type == "hist1d":
        return (int(spec.num_bins),)  # type: ignore[arg-type]
    if spec.type == "hist2d":
        bins = spec.num_bins
        return tuple(bins) if isinstance(bins, tuple) else (int(bins), int(bins))  # type: ignore[arg-type]
    if spec.type == "dethist":
        return spec.width, spec.height
    return spec.width, len(spec.left_edges)


def bins_of(spec: HistSpec) -> int:
    return math.prod(dims_of(spec))


def message_bytes(spec: HistSpec) -> int:
    """About the bytes of its hs00/hs01: float64 counts and edges, and the margin for the
    info JSON and the FlatBuffers framing."""
    dims = dims_of(spec)
    return 8 * (math.prod(dims) + sum(d + 1 for d in dims)) + MESSAGE_MARGIN_BYTES


def _sized(spec: HistSpec, bins: int, where: str) -> HistSpec:
    if bins > MAX_BINS or message_bytes(spec) > MAX_MESSAGE_BYTES:
        raise CommandError(f"{where}: {bins:,} bins is more than the {MAX_BINS:,} allowed "
                           f"(its hs00 must fit one {MAX_MESSAGE_BYTES // 2**20} MiB Kafka "
                           "message)")
    # the ranges binned (dethist and roihist only filter by theirs)
    binned = {"hist1d": (spec.tof_range,), "hist2d": (spec.tof_range, spec.det_range)}
    for bounds, n in zip(binned.get(spec.type, ()), dims_of(spec), strict=False):
        low, high = bounds  # type: ignore[misc]
        if not (high - low) / n >= MIN_BIN_WIDTH:
            raise CommandError(f"{where}: {n:,} bins over [{low}, {high}] are narrower than "
                               f"{MIN_BIN_WIDTH}")
    return spec


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value: object, name: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_BINS:
        raise CommandError(f"{where}: {name} must be a positive integer, at most {MAX_BINS:,}")
    return value


def _bins(value: object, where: str, pair: bool) -> int | tuple[int, int]:
    if pair and isinstance(value, list) and len(value) == 2:
        return (_positive_int(value[0], "num_bins", where),
                _positive_int(value[1], "num_bins", where))
    if value is None:
        raise CommandError(f"{where}: num_bins is missing")
    return _positive_int(value, "num_bins", where)


def _range(h: dict[str, Any], key: str, where: str, required: bool,
           limit: float) -> tuple[float, float] | None:
    value = h.get(key)
    if value is None:
        if required:
            raise CommandError(f"{where}: {key} is missing")
        return None
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(_number(v) and abs(v) <= limit for v in value)):  # NaN fails too
        raise CommandError(f"{where}: {key} must be [low, high], finite numbers within "
                           f"+-{limit:g}")
    low, high = float(value[0]), float(value[1])
    if not high > low:
        raise CommandError(f"{where}: {key} must have high above low")
    return low, high
