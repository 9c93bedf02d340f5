"""`datastream ioc`: the run-control IOC with its simulated DAE."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from datastream.access_config import AcfError, default_config, load_acf
from datastream.ca_beacons import quiet_beacon_refusals
from datastream.ca_lengths import serve_native_counts
from datastream.geometry import GeometryError
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_producer
from datastream.metrics import Health, serve_metrics
from datastream.streams import runlog_streams
from datastream.topic_listener import TopicListener
from ioc.access_security import secure
from ioc.beam_model import BEAM_OFF_VETO
from ioc.dae import DaeCounters
from ioc.dae_settings import (
    HARDWARE_PERIOD_SLOTS,
    VETO_SWITCHES,
    DaeConfig,
    DaeConfigStore,
    DaeSetup,
    Periods,
    PeriodSlot,
    Tcb,
    TimeRow,
)
from ioc.event_count import count_run_events
from ioc.forwarder_status import ForwarderStatus
from ioc.labview_xml import SettingsError
from ioc.metrics import collect
from ioc.run_control import RunControl, RunControlError
from ioc.run_numbers import RunNumberStore
from ioc.run_record import RunInfo, RunRecordStore
from ioc.runstate import CommandRefused
from ioc.simulated_dae import DaeSettings, SimulatedDae
from ioc.standalone_job import JobRefused, StandaloneJob
from ioc.writer_status import WriterStatus

log = logging.getLogger(__name__)


class _RefusalsWithoutTraceback(logging.Filter):
    """caproto logs every failed put with a traceback; a refused run-control command is an
    expected answer, logged once as a line by run control itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, CommandRefused | RunControlError | JobRefused)


HELP = "the run-control IOC (caproto) with the simulated DAE"


def main(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    run(config, kafka, args)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca-port", type=int,
                        default=int(os.environ.get("EPICS_CA_SERVER_PORT", 5064)),
                        help="Channel Access server port (env EPICS_CA_SERVER_PORT)")
    parser.add_argument("--access-security", type=Path,
                        help="EPICS access configuration file (ACF) for the writable PVs "
                        "(default: the config's [run_control] access_security; without one, "
                        "only this host may write)")
    parser.add_argument("--interfaces", default=os.environ.get("EPICS_CAS_INTF_ADDR_LIST",
                                                               "127.0.0.1"),
                        help="addresses the CA server binds to")


def legacy_periods(n: int) -> Periods:
    """HARDWAREPERIODS for [dae] periods = N: hardware periods, a frame each in turn (the
    document has 8 slots; more periods than that are shown as 8)."""
    if n <= 1:
        return Periods()
    slots = [PeriodSlot(1, 1) for _ in range(min(n, HARDWARE_PERIOD_SLOTS))]
    slots += [PeriodSlot()] * (HARDWARE_PERIOD_SLOTS - len(slots))
    return Periods(period_type=1, slots=tuple(slots))


def initial_setup(dae: DaeSettings) -> DaeSetup:
    """DAESETTINGS with the vetoes of what the simulated DAE simulates switched on ([dae]
    vetoes, and the external veto the target station raises in a beam-off spell), as an
    instrument's vetoes are set up before its first run."""
    simulated = set(dae.vetoes) | ({BEAM_OFF_VETO} if dae.beam_off_every_s else set())
    flags = {switch: 1 for switch, veto in VETO_SWITCHES.items() if veto in simulated}
    names = tuple("TS1 not ready" if f"ext{i}" == BEAM_OFF_VETO and BEAM_OFF_VETO in simulated
                  else "" for i in range(4))
    return DaeSetup(flags=flags, veto_names=names)  # type: ignore[arg-type]


def initial_tcb(config: InstrumentConfig) -> Tcb:
    """The TCB the live view bins with by default ([liveview] time channels), so the first
    run binned with TCBSETTINGS bins as before."""
    low_ns, high_ns, n, logarithmic = config.time_channels()
    low, high = low_ns / 1000, high_ns / 1000
    if logarithmic and low > 0:
        return Tcb((TimeRow(low, high, (high / low) ** (1 / n) - 1, 2),))
    return Tcb((TimeRow(low, high, (high - low) / n, 1),))


def run(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> None:
    # caproto reads its port and beacon addresses from the environment when the server starts
    os.environ["EPICS_CA_SERVER_PORT"] = str(args.ca_port)
    os.environ["EPICS_CAS_SERVER_PORT"] = str(args.ca_port)
    os.environ.setdefault("EPICS_CAS_BEACON_ADDR_LIST", args.interfaces.split()[0])
    os.environ.setdefault("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "NO")
    from caproto.server import run as run_server

    logging.getLogger("caproto.circ").addFilter(_RefusalsWithoutTraceback())
    quiet_beacon_refusals()

    from ioc.pvgroups import RunControlIOC

    topics = config.topics
    try:
        dae_settings = DaeSettings(**config.dae)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"bad [dae] section in {args.config}: {exc}") from exc
    try:
        geometry = config.geometry()
    except GeometryError as exc:
        raise SystemExit(f"bad geometry: {exc}") from exc
    producer = make_producer(kafka)
    # idempotent: a frame resent after a lost acknowledgement is not in the topic twice
    dae = SimulatedDae(make_producer(kafka, enable_idempotence=True, acks="all"),
                       topics.events, dae_settings, geometry=geometry)
    writer_status = WriterStatus()
    forwarder_status = ForwarderStatus()
    runinfo_dir = config.data_dir / "runinfo"
    control = RunControl(
        instrument=config.name, topics=topics, producer=producer, dae=dae,
        run_numbers=RunNumberStore(runinfo_dir / f"{config.name}_runnumber.txt"),
        writer=writer_status, logs=config.streams(), events_source=dae_settings.source_name,
        run_log=runlog_streams(config.prefix, topics.run_log),
        broker=kafka.bootstrap, end_timeout_s=config.end_timeout_s,
        record_store=RunRecordStore(runinfo_dir / f"{config.name}_run.json"),
        spectra=(dae_settings.first_pixel, dae_settings.pixels), geometry=geometry,
        dae_config=DaeConfig(setup=initial_setup(dae_settings), tcb=initial_tcb(config),
                             periods=legacy_periods(dae_settings.periods)),
        config_store=DaeConfigStore(runinfo_dir / f"{config.name}_dae_settings.json"),
        tables_dir=Path(args.config).parent)
    try:
        control.load_config()
    except (SettingsError, ValueError) as exc:
        raise SystemExit(f"DAE settings: {exc}") from exc

    monitors = frozenset(m.name for m in geometry.monitors) if geometry else frozenset()

    def count(run: RunInfo) -> DaeCounters:
        return count_run_events(kafka, topics.events, dae_settings.source_name, run.start_ns,
                                stop_ns=run.stop_ns or None, periods=control.dae.periods,
                                monitors=monitors)

    control.restore(count)
    # a run carried on from before the restart: what the writer said of it meanwhile counts
    since_ms = control.run.start_ns // 1_000_000 if control.active_job() else None
    # the writer reports on runInfo, or on writerStatus where ACLs keep it off runInfo
    listeners = [TopicListener(kafka, topics.run_info, writer_status.on_message, since_ms),
                 TopicListener(kafka, topics.writer_status, writer_status.on_message, since_ms),
                 TopicListener(kafka, topics.forwarder_status, forwarder_status.on_message)]
    standalone = StandaloneJob(config.name, topics, producer, writer_status,
                               lambda: writer_status.view().state,
                               structures_dir=Path(args.config).parent)
    ioc = RunControlIOC(prefix=config.prefix, control=control, writer_status=writer_status,
                        forwarder_status=forwarder_status, standalone_job=standalone,
                        simulated_dae=dae)
    # EPICS base's clients (genie_python's CaChannel) read char waveforms and record fields
    # at their native count: serve them so, as an EPICS IOC does
    serve_native_counts(ioc.pvdb)
    acf_path = args.access_security or config.access_security
    try:
        access = load_acf(acf_path) if acf_path else default_config()
    except AcfError as exc:
        raise SystemExit(f"access security: {exc}") from exc
    secure(ioc.pvdb, access, logging.getLogger("caputlog"))
    log.info("access security: %s", acf_path or "built-in (writes from this host only)")
    # no status message of its own: ready is the broker and topics; healthy is the CA scan
    health = Health(None, kafka, [topics.run_info, topics.events])
    ioc.on_scan = health.tick
    metrics = serve_metrics(args.metrics_port or None, "run-control-ioc", config.name, health,
                            lambda: collect(control, dae))
    dae.start()
    for listener in listeners:
        listener.start()
    log.info("run-control IOC %s on CA port %d; %d PVs; run number %d", config.prefix,
             args.ca_port, len(ioc.pvdb), control.run.run_number)
    try:
        run_server(ioc.pvdb, interfaces=args.interfaces.split(), log_pv_names=False)
    finally:
        if metrics is not None:
            metrics.close()
        control.close()
        for listener in listeners:
            listener.close()
        dae.close()
        producer.flush(5)
