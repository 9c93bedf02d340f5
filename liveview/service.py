"""`datastream liveview`: follows the instrument's runs on <INST>_runInfo, bins the events of
the current run from <INST>_events (from the run's start, so a live view started mid-run
catches up), and shows the counts as PVs. One consumer thread owns the Kafka side; the
histogram is read under its lock by the publisher."""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition

from datastream.access_config import load_acf
from datastream.epics_network import EpicsPorts
from datastream.event_messages import read_stream
from datastream.geometry import Geometry
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_consumer, make_producer, offsets_since
from datastream.metrics import Health, serve_metrics
from datastream.run_window import Window
from datastream.schemas.pu00 import PulseMetadata
from datastream.time_channels import TimeChannels
from liveview import monitor_spectra
from liveview.array_pvs import ArrayPVs
from liveview.dae_ca import DaeSpectra
from liveview.jbi_service import JbiService, JbiTopics
from liveview.load_shedding import LoadShedder
from liveview.metrics import collect
from liveview.pva_access import set_access
from liveview.pvs import LivePVs
from liveview.reduction import Reduced, Reduction, ReductionSettings
from liveview.reduction_binning import warm_up
from liveview.reduction_da00 import Da00Publisher
from liveview.reduction_pvs import ReductionPVs
from liveview.reduction_run import ReducingHistogram
from liveview.run_follower import RunStarted, RunStopped, decide
from liveview.run_histogram import MAX_HISTOGRAM_MB, MAX_PERIODS, RunHistogram, check_size
from liveview.se_logs import SampleEnvLogs
from liveview.spectrum_map import SpectrumMap, for_run
from liveview.web import WebServer, image_shape, live_state, make_app, page_entry

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
# the counters (cheap: a snapshot) every COUNTER_INTERVAL_S, so a PV shows an event within
# about that; the arrays (spectra, images, the page's histograms: sums over the whole
# histogram, under its lock) every PUBLISH_INTERVAL_S, as just-bin-it publishes
COUNTER_INTERVAL_S = 0.1
PUBLISH_INTERVAL_S = 0.5
# at start-up, a run begun up to this long ago may still be counting: look for it
JOIN_LOOKBACK_S = 24 * 3600
# events are read from a little before the run's start: producers' clocks and Kafka time
SEEK_MARGIN_MS = 1000
# how often the consumer lag is measured (from cached offsets: no request to the broker)
LAG_CHECK_INTERVAL_S = 0.5
# how long the broker may hold a fetch when nothing new is there (librdkafka's default is
# 500 ms): the broker answers a connection's requests in order, so each lookup a run start
# makes (the topic's metadata, the offset for a time, the end) queued behind a held fetch,
# 0.6-1.4 s a run start before its histograms were reset (measured); a live view polls an
# idle topic 20 times a second instead of twice
FETCH_WAIT_MS = 50


@dataclass(frozen=True)
class LiveSettings:
    first_pixel: int
    pixels: int
    channels: TimeChannels
    image_width: int | None = None  # the live page's detector image; None: near square
    max_lag_s: float = 30.0  # reading live, past this lag binning is shed (load_shedding)
    source_name: str = "DAE"  # the detector's events (not the monitors')
    # bank name -> its pixel ids in its shape (rows, columns), from the geometry
    banks: dict[str, np.ndarray] = field(default_factory=dict)
    max_periods: int = MAX_PERIODS  # ISIS periods binned at most (each a whole histogram)
    max_histogram_mb: int = MAX_HISTOGRAM_MB  # the memory all periods' histograms may take
    # the live reduction (I(d), I(2θ, d), I(λ): liveview.reduction), with a geometry only
    geometry: Geometry | None = None
    reduction: ReductionSettings | None = None

    @classmethod
    def from_config(cls, config: InstrumentConfig) -> LiveSettings:
        """Pixels from the DAE's settings, time channels over one frame unless [liveview]
        says otherwise (tof_min_ns, tof_max_ns, channels, logarithmic); image_width lays
        out the live page's detector image; max_lag_s is the lag past which binning is shed;
        max_periods the most periods binned."""
        dae = config.dae
        table = dict(config.liveview)
        channels = TimeChannels(*config.time_channels())
        width = table.get("image_width")
        first, pixels = int(dae.get("first_pixel", 1)), int(dae.get("pixels", 16384))
        geometry = config.geometry()
        banks = {}
        if geometry is not None:  # the banks' pixels, whatever [dae] says
            ids = geometry.pixel_ids()
            first, pixels = int(ids.min()), int(ids.max() - ids.min() + 1)
            banks = {b.name: b.ids for b in geometry.banks}
        limits = {}
        for key, default in (("max_periods", MAX_PERIODS),
                             ("max_histogram_mb", MAX_HISTOGRAM_MB)):
            value = table.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"[liveview] {key} {value!r}: a whole number, >= 1")
            limits[key] = value
        check_size(pixels, channels, limits["max_histogram_mb"])
        reduction = None
        if geometry is not None:
            frame_ns = 1e9 / float(dae.get("frame_rate_hz", 10.0))  # type: ignore[arg-type]
            reduction = ReductionSettings.from_table(table, geometry, frame_ns)
        return cls(first, pixels, channels, int(width) if width else None,
                   float(table.get("max_lag_s", 30.0)), str(dae.get("source_name", "DAE")),
                   banks, **limits, geometry=geometry, reduction=reduction)


class LiveView:
    def __init__(self, config: InstrumentConfig, kafka: KafkaSettings,
                 settings: LiveSettings, ports: EpicsPorts) -> None:
        self.config, self.kafka, self.settings = config, kafka, settings
        self.reduction: Reduction | None = None
        self.reduction_pvs: ReductionPVs | None = None
        if settings.geometry is not None and settings.reduction is not None:
            warm_up()
            self.reduction = Reduction(settings.geometry, settings.reduction)
            self.reduction_pvs = ReductionPVs(f"{config.prefix}LIVE:", self.reduction)
        self._da00: Da00Publisher | None = None  # made as the publisher first sends
        self.histogram = self._new_histogram(settings.channels)
        # the current run's spectra (its pl72's map), which the DAE's spectrum PVs and
        # LIVE:SPEC sum the per-pixel histogram into; one a pixel until a run says
        self.spectra = SpectrumMap.one_a_pixel(settings.first_pixel, settings.pixels)
        self.arrays = ArrayPVs(f"{config.prefix}LIVE:", self.histogram,
                               image_shape(settings.pixels, settings.image_width),
                               settings.banks, on_tcb=self.request_channels,
                               spectra=lambda: self.spectra)
        self._run: RunStarted | None = None
        # what the live page draws of the arrays, as of the last publish_arrays()
        self.page: dict[str, object] = {"tof": {"edges": [], "counts": []}, "images": []}
        self._new_channels: TimeChannels | None = None  # asked for, not yet binned with
        # the ISIS DAE's spectrum PVs (DAE:SPEC:..., SPECDATA, ...), on the CA server
        self.dae = DaeSpectra(config.prefix, lambda: self.histogram, settings.pixels,
                              settings.max_periods, self.caught_up, lambda: self.spectra)
        self.pvs = LivePVs(config.prefix, ports.liveview_server_conf(), self.arrays,
                           ports.liveview_ca or None, self.dae.pvdb,
                           self.reduction_pvs.static() if self.reduction_pvs else None)
        if self.pvs.ca is not None:
            self.dae.serve_with(self.pvs.ca.submit)
        self.job_id = ""
        self.run_name = ""
        self.title = ""
        self.malformed = 0
        self.consumer_lag = 0  # event messages behind the end of the events topic
        # monotonic times of the last lag check and of the current run's stop arriving
        # (None: no stop yet), for caught_up()
        self._lag_checked_at = 0.0
        self._stop_seen_at: float | None = None
        self._warned_period = False  # of a period past max_periods, once a run
        self.shedder = LoadShedder(settings.max_lag_s)
        self._run_info_next: dict[int, int] = {}  # next offset per runInfo partition
        self._rate: collections.deque[tuple[float, int]] = collections.deque()

    # -- Kafka --
    def _partitions(self, consumer: Consumer, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise RuntimeError(f"topic {topic} not found on the broker")
        return sorted(metadata.partitions)

    def _find_current_run(self, consumer: Consumer) -> RunStarted | None:
        """The last DAE run on runInfo within the lookback, with its stop if it has one; and
        where runInfo ends now (the live view reads on from there)."""
        topic = self.config.topics.run_info
        since = time.time_ns() // NS_PER_MS - JOIN_LOOKBACK_S * 1000
        parts = self._partitions(consumer, topic)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since) for p in parts],
                                            timeout=10)
        self._run_info_next = dict(ends)
        todo = {tp.partition: tp.offset for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        if not todo:
            return None
        consumer.assign([TopicPartition(topic, p, o) for p, o in todo.items()])
        last: RunStarted | None = None
        stops: dict[str, int] = {}
        remaining = set(todo)
        while remaining:
            msg = consumer.poll(10)
            if msg is None:
                break
            if msg.error():
                continue
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
            try:
                decision = decide(msg.value() or b"", last.job_id if last else "")
            except Exception:
                continue
            if isinstance(decision, RunStarted):
                last = decision
            elif isinstance(decision, RunStopped):
                stops[decision.job_id] = decision.stop_ns
        if last is not None and last.stop_ns is None and last.job_id in stops:
            last = dataclasses.replace(last, stop_ns=stops[last.job_id])
        return last

    def _assign(self, consumer: Consumer, events_from_ms: int | None) -> None:
        """runInfo where it was; the events topic from a time (a run's start), or its end."""
        run_info, events = self.config.topics.run_info, self.config.topics.events
        parts = self._partitions(consumer, events)
        if events_from_ms is None:
            offsets = [TopicPartition(events, p, consumer.get_watermark_offsets(
                TopicPartition(events, p), timeout=10)[1]) for p in parts]
        else:
            offsets = offsets_since(
                consumer, [TopicPartition(events, p, events_from_ms) for p in parts])
        consumer.assign([TopicPartition(run_info, p, o)
                         for p, o in self._run_info_next.items()] + offsets)

    def request_channels(self, channels: TimeChannels) -> None:
        """New time channels (the TCB setpoints): the consumer bins the current run again
        with them, from its start (the events are all in Kafka). Too many channels for the
        memory allowed: ValueError, and the put that asked fails with the reason."""
        check_size(self.settings.pixels, channels, self.settings.max_histogram_mb)
        self._new_channels = channels

    def _rebin(self, consumer: Consumer) -> None:
        channels, self._new_channels = self._new_channels, None
        self._bin_with(channels)
        if self._run is not None:
            # the channels asked for hold for the rest of this run, whatever its TCB was
            self._begin(consumer, dataclasses.replace(self._run, channels=channels),
                        rebinning=True)

    def _new_histogram(self, channels: TimeChannels) -> RunHistogram:
        """An empty run histogram of these time channels; one that reduces too when there is
        a reduction (which it empties: the run is read again from its start)."""
        s = self.settings
        if self.reduction is not None:
            return ReducingHistogram(self.reduction, s.first_pixel, s.pixels, channels,
                                     s.max_periods, s.max_histogram_mb)
        return RunHistogram(s.first_pixel, s.pixels, channels, s.max_periods,
                            s.max_histogram_mb)

    def _bin_with(self, channels: TimeChannels) -> None:
        """A new, empty histogram of these time channels (the caller begins the run again)."""
        histogram = self._new_histogram(channels)
        self.histogram = histogram
        self.arrays.set_histogram(histogram)
        log.info("time channels now %s", channels)

    def caught_up(self) -> bool:
        """False from the run's stop arriving until a lag check after it finds the consumer at
        the end of the events topic (the DAE sends a run's last frames before run control
        sends its stop): until then a read may miss the run's last events. The lag is of the
        ends the consumer's last fetches saw, so this is "caught up as far as it knows"."""
        stopped = self._stop_seen_at
        return stopped is None or (self._lag_checked_at > stopped and self.consumer_lag == 0)

    def _begin(self, consumer: Consumer, run: RunStarted, rebinning: bool = False) -> None:
        """Follow a run from its start (again, when `rebinning`: its map is kept)."""
        if run.channels is not None and run.channels != self.histogram.channels:
            # the DAE's TCB for this run, as run control put it in the pl72
            try:
                check_size(self.settings.pixels, run.channels, self.settings.max_histogram_mb)
            except ValueError as exc:
                log.warning("run %s: its time channels are not binned here: %s",
                            run.run_name, exc)
            else:
                self._bin_with(run.channels)
        if not rebinning:
            spectra, warning = for_run(run.spectrum_map, self.settings.first_pixel,
                                       self.settings.pixels)
            spectra, warnings = monitor_spectra.for_run(run.nexus_structure, spectra,
                                                        self.settings.source_name)
            self.spectra = spectra
            for said in ([warning] if warning else []) + warnings:
                log.warning("run %s: %s", run.run_name, said)
        self._run = run
        self._stop_seen_at = time.monotonic() if run.stop_ns else None
        self.job_id, self.run_name, self.title = run.job_id, run.run_name, run.title
        # the monitors served as spectra are binned from the run's start too
        self.histogram.reset(Window(run.start_ns, run.stop_ns), self.spectra.monitor_sources)
        self._warned_period = False
        self.shedder.restart()
        self._rate.clear()
        # from 0 at the earliest: Kafka reads a negative time as "the end" (-1) or worse
        self._assign(consumer, max(0, run.start_ns // NS_PER_MS - SEEK_MARGIN_MS))
        log.info("following run %s (job %s) from %d ms", run.run_name, run.job_id,
                 run.start_ns // NS_PER_MS)

    def _on_run_info(self, consumer: Consumer, payload: bytes, kafka_ms: int) -> None:
        decision = decide(payload, self.job_id)
        if isinstance(decision, RunStarted):
            self._begin(consumer, decision)
        elif isinstance(decision, RunStopped):
            self.histogram.set_stop(decision.stop_ns or kafka_ms * NS_PER_MS)
            self._stop_seen_at = time.monotonic()
            if self._run is not None:  # a rebinning reads the run to its stop
                self._run = dataclasses.replace(self._run, stop_ns=decision.stop_ns)
            log.info("run %s stops at %d ms", self.run_name, decision.stop_ns // NS_PER_MS)

    def _on_event(self, payload: bytes) -> None:
        ev = read_stream(payload)
        if isinstance(ev, PulseMetadata):
            self.histogram.add_pulse(ev)
            return
        if ev is None:
            return  # not events
        if ev.source_name != self.settings.source_name:
            # another source's: a beam monitor's is binned as its spectrum and, reducing, to
            # I(λ); any other is not counted
            self.histogram.add_monitor(ev.source_name, ev.message_id, ev.reference_time,
                                       ev.reference_time_index, ev.time_of_flight,
                                       ev.pixel_id, period=ev.period)
            return
        ref = ev.reference_time
        lag_s = (time.time_ns() - int(ref[-1])) / 1e9 if len(ref) else 0.0
        if ev.period >= self.histogram.max_periods and not self._warned_period:
            self._warned_period = True
            log.warning("period %d is past the %d periods binned ([liveview] max_periods, "
                        "max_histogram_mb): its events are counted, not binned (said once a "
                        "run)", ev.period + 1, self.histogram.max_periods)
        self.histogram.add(ev.message_id, ref, ev.reference_time_index, ev.time_of_flight,
                           ev.pixel_id, bin_events=self.shedder.bin_next(lag_s),
                           period=ev.period, proton_charge=ev.proton_charge)

    def _start_reading(self, consumer: Consumer, stop: threading.Event) -> None:
        """Join the run in progress, or wait at the end; retried until the broker answers."""
        failures = 0
        while not stop.is_set():
            try:
                run = self._find_current_run(consumer)
                if run is not None:
                    self._begin(consumer, run)
                else:
                    self._assign(consumer, None)
                return
            except Exception as exc:
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "cannot read the instrument's topics yet (retrying): %s", exc)
                stop.wait(2)

    def consume(self, stop: threading.Event) -> None:
        consumer = make_consumer(self.kafka, fetch_wait_max_ms=FETCH_WAIT_MS)
        try:
            self._start_reading(consumer, stop)
            run_info = self.config.topics.run_info
            next_lag_check = 0.0
            while not stop.is_set():
                if self._new_channels is not None:
                    self._rebin(consumer)
                if time.monotonic() >= next_lag_check:
                    self.consumer_lag = events_behind(consumer, self.config.topics.events)
                    self._lag_checked_at = time.monotonic()
                    next_lag_check = time.monotonic() + LAG_CHECK_INTERVAL_S
                for msg in consumer.consume(num_messages=500, timeout=0.1):
                    if msg.error():
                        continue
                    try:
                        if msg.topic() == run_info:
                            self._run_info_next[msg.partition()] = msg.offset() + 1
                            self._on_run_info(consumer, msg.value() or b"", msg.timestamp()[1])
                        else:
                            self._on_event(msg.value() or b"")
                    except Exception as exc:  # one bad message never stops the live view
                        self.malformed += 1
                        log.warning("skipped a message on %s at %d: %s", msg.topic(),
                                    msg.offset(), exc)
        finally:
            consumer.close()

    # -- publishing --
    def publish_arrays(self) -> None:
        """The array PVs, and what the page draws, computed once for every reader."""
        images = self.arrays.update()
        self.dae.update()
        histogram = self.histogram
        self.page = {
            "tof": {"edges": histogram.channels.edges().tolist(),
                    "counts": histogram.spectrum().tolist()},
            "images": [page_entry(name, c) for name, c in images.items()]}
        if self.reduction_pvs is not None:  # after the page: a broker away delays nothing
            reduced = self.reduction_pvs.update(float(histogram.snapshot()["good_uah"]))
            self._publish_da00(reduced)

    def _publish_da00(self, reduced: Reduced) -> None:
        if self._da00 is None:
            reduction = self.settings.reduction
            topic = (reduction.topic if reduction and reduction.topic
                     else self.config.topics.name("liveData"))
            self._da00 = Da00Publisher(make_producer(self.kafka), topic)
        self._da00.publish(reduced)

    def close(self) -> None:
        """What the publisher opened: the da00 producer (its queue flushed)."""
        if self._da00 is not None:
            self._da00.close()

    def publish_counters(self) -> None:
        snapshot = self.histogram.snapshot()
        now = time.monotonic()
        self._rate.append((now, int(snapshot["events"])))
        while len(self._rate) > 2 and now - self._rate[0][0] > 5:
            self._rate.popleft()
        (t0, e0), (t1, e1) = self._rate[0], self._rate[-1]
        rate = (e1 - e0) / (t1 - t0) if t1 > t0 and e1 >= e0 else 0.0
        self.pvs.show(snapshot, self.run_name, self.spectra.n_spectra,
                      self.histogram.channels.channels, rate, self.consumer_lag)


def events_behind(consumer: Consumer, topic: str) -> int:
    """Messages of `topic` the consumer has still to read: each assigned partition's end, as
    its last fetch saw it (no request to the broker), less the consumer's position."""
    behind = 0
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        for tp in consumer.position(assigned):
            if tp.offset >= 0:
                high = consumer.get_watermark_offsets(tp, cached=True)
                if high is not None and high[1] >= 0:
                    behind += max(0, high[1] - tp.offset)
    except KafkaException:  # between assignments: said next time
        pass
    return behind


def default_jbi_topics(config: InstrumentConfig) -> JbiTopics:
    t = config.topics
    return JbiTopics(t.name("liveCommands"), t.name("liveResponses"), t.name("liveStatus"))


def run(config: InstrumentConfig, kafka: KafkaSettings, ports: EpicsPorts,
        stop: threading.Event | None = None, metrics_port: int | None = None,
        jbi_topics: JbiTopics | None = None, http: tuple[str, int] | None = None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # the site's ACF decides who may put the live view's setpoints, as the IOC's (a file that
    # cannot be read stops the start: refusing everyone or no one by mistake is worse)
    set_access(load_acf(config.access_security) if config.access_security else None)
    view = LiveView(config, kafka, LiveSettings.from_config(config), ports)
    view.pvs.start()
    # no status message: ready is the broker and topics, healthy is the publishing loop
    health = Health(None, kafka, [config.topics.run_info, config.topics.events])
    metrics = serve_metrics(metrics_port, "liveview", config.name, health,
                            lambda: collect(view))
    consumer = threading.Thread(target=view.consume, args=(stop,), name="live-consumer")
    consumer.start()
    jbi = JbiService(kafka, jbi_topics or default_jbi_topics(config), f"liveview-{config.name}")
    jbi_thread = threading.Thread(target=jbi.run, args=(stop,), name="live-jbi")
    jbi_thread.start()
    web, se_thread = None, None
    if http is not None:
        # the page's sample-environment logs: read only when there is a page to show them
        se_logs = SampleEnvLogs(kafka, config.topics.sample_env)
        se_thread = threading.Thread(target=se_logs.run, args=(stop,), name="live-se-logs",
                                     daemon=True)
        se_thread.start()
        web = WebServer(make_app(
            lambda pixel, roi, period: live_state(view, pixel, se_logs, roi, period)), *http)
        web.start()
        log.info("live page at %s", web.url)
    log.info("live view of %s: PVs %s* on PVA port %d", config.name, view.pvs.prefix,
             ports.liveview_pva)
    try:
        ticks_per_publish = round(PUBLISH_INTERVAL_S / COUNTER_INTERVAL_S)
        tick = 0
        failures = 0
        while not stop.wait(COUNTER_INTERVAL_S):
            tick += 1
            try:
                view.publish_counters()
                if tick % ticks_per_publish == 0:
                    health.tick()
                    view.publish_arrays()
            except Exception:  # a value no PV can show never ends the live view: said, and on
                failures += 1
                log.log(logging.ERROR if failures <= 3 else logging.DEBUG,
                        "publishing the live view's PVs failed", exc_info=True)
            if not consumer.is_alive() or not jbi_thread.is_alive():
                raise SystemExit("the live view's consumer stopped")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        consumer.join(10)
        jbi_thread.join(10)
        if web is not None:
            web.close()
        if se_thread is not None:
            se_thread.join(5)
        if metrics is not None:
            metrics.close()
        view.close()
        view.pvs.close()
