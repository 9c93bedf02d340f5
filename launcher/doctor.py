"""`datastream doctor`: one line per check of a running instrument, exit 1 if one fails.

Checks: the broker answers; the topics are as the table says; this host's clock against the
broker's; each service's /readyz; the data disk's headroom."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaException

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_admin, make_producer
from launcher.supervision import SUPERVISOR_STATE, given_up
from launcher.topic_ensure import plan_topics

# the file writer's leeway after a run's stop is 1 s: a clock further off loses data
CLOCK_FAIL_MS = 1000.0
CLOCK_WARN_MS = 100.0
DISK_FAIL = 0.9
DISK_WARN = 0.8


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN, FAIL
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<16} {self.detail}"


def check_broker(kafka: KafkaSettings) -> Check:
    t0 = time.perf_counter()
    try:
        metadata = make_admin(kafka).list_topics(timeout=5)
    except KafkaException as exc:
        return Check("FAIL", "broker", f"{kafka.bootstrap}: no answer ({exc.args[0].str()})")
    ms = (time.perf_counter() - t0) * 1000
    return Check("OK", "broker", f"{kafka.bootstrap}: {len(metadata.brokers)} broker(s), "
                 f"controller {metadata.controller_id}, answered in {ms:.0f} ms")


def check_topics(kafka: KafkaSettings, config: InstrumentConfig) -> Check:
    try:
        plan = plan_topics(make_admin(kafka), config.topics, config.topic_table(), timeout=10)
    except Exception as exc:
        return Check("FAIL", "topics", f"cannot compare with the table: {exc}")
    drift = plan.lines()
    if not drift:
        return Check("OK", "topics", f"{len(plan.unchanged)} topics as the table says")
    return Check("FAIL", "topics", f"{len(drift)} difference(s): " + "; ".join(drift[:3])
                 + (" ..." if len(drift) > 3 else "")
                 + " (`datastream topics check` lists them, `topics ensure` fixes them)")


def clock_offset_ms(kafka: KafkaSettings, topic: str) -> tuple[float, float]:
    """(broker clock - this host's clock, uncertainty), both ms, from one message the broker
    stamps on append."""
    producer = make_producer(kafka)
    stamped: list[tuple[int, int]] = []
    sent = time.time()
    producer.produce(topic, b"datastream doctor",
                     on_delivery=lambda err, msg: stamped.append(
                         (-1, 0) if err else msg.timestamp()))
    producer.flush(10)
    acked = time.time()
    if not stamped or stamped[0][0] == -1:
        raise RuntimeError(f"no acknowledgement from the broker for {topic}")
    kind, broker_ms = stamped[0]
    if kind != TIMESTAMP_LOG_APPEND_TIME:
        raise RuntimeError(f"{topic} does not stamp append times (message.timestamp.type "
                           "LogAppendTime in the topic table; `topics ensure` sets it)")
    middle_ms = (sent + acked) / 2 * 1000
    return broker_ms - middle_ms, (acked - sent) / 2 * 1000


def check_clock(kafka: KafkaSettings, config: InstrumentConfig) -> Check:
    try:
        offset, plus_minus = clock_offset_ms(kafka, config.topics.name("heartbeat"))
    except Exception as exc:
        return Check("FAIL", "clock", f"cannot measure: {exc}")
    status = ("FAIL" if abs(offset) > CLOCK_FAIL_MS + plus_minus
              else "WARN" if abs(offset) > CLOCK_WARN_MS + plus_minus else "OK")
    return Check(status, "clock", f"broker minus this host {offset:+.0f} ms "
                 f"(+/- {plus_minus:.0f} ms)" + (
                     "; run windows allow 1 s: synchronise the clocks (NTP/PTP)"
                     if status == "FAIL" else ""))


def check_service(name: str, address: str) -> Check:
    url = f"http://{address}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5):
            return Check("OK", name, f"ready ({address})")
    except urllib.error.HTTPError as exc:
        reasons = exc.read().decode(errors="replace").strip().replace("\n", "; ")
        return Check("FAIL", name, f"not ready ({address}): {reasons}")
    except OSError as exc:
        return Check("FAIL", name, f"no answer at {url}: {getattr(exc, 'reason', exc)}")


def check_disk(path: Path) -> Check:
    where = path if path.exists() else path.parent
    usage = shutil.disk_usage(where)
    used = usage.used / usage.total if usage.total else 0.0
    status = "FAIL" if used > DISK_FAIL else "WARN" if used > DISK_WARN else "OK"
    return Check(status, "data disk", f"{path}: {used:.0%} used, "
                 f"{usage.free / 2**30:.1f} GiB free")


def run_checks(config: InstrumentConfig, kafka: KafkaSettings,
               services: dict[str, str]) -> Iterator[Check]:
    broker = check_broker(kafka)
    yield broker
    if broker.status == "OK":  # the rest of Kafka's checks would each wait for it again
        yield check_topics(kafka, config)
        yield check_clock(kafka, config)
    for name, address in services.items():
        yield check_service(name, address)
    yield check_disk(config.data_dir)
    yield check_supervisor(config.data_dir)


def check_supervisor(data_dir: Path) -> Check:
    """Services `up` gave up restarting (too many deaths in its window)."""
    gone = given_up(data_dir / SUPERVISOR_STATE)
    if gone:
        return Check("FAIL", "supervisor", f"given up: {', '.join(gone)} (died too often; "
                     "see their logs, then restart `datastream up`)")
    return Check("OK", "supervisor", "no service given up")


def doctor(config: InstrumentConfig, kafka: KafkaSettings, services: dict[str, str]) -> int:
    failed = 0
    for check in run_checks(config, kafka, services):
        print(check.line(), flush=True)
        failed += check.status == "FAIL"
    return 1 if failed else 0
