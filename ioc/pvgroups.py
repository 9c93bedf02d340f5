"""The caproto PVs of the run-control IOC: ISISDAE run control under <prefix>DAE:, the
file writer's status and standalone write jobs under <prefix>FILEWRITER:, the forwarder's
status under <prefix>FORWARDER:."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable

from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from ioc.forwarder_status import ForwarderState, ForwarderStatus
from ioc.run_control import RunControl
from ioc.runstate import RunState
from ioc.simulated_dae import SimulatedDae
from ioc.standalone_job import JobRefused, StandaloneJob
from ioc.writer_status import WriterState, WriterStatus

log = logging.getLogger(__name__)

_BO = {"dtype": ChannelType.ENUM, "enum_strings": ("0", "1"), "record": "bo", "value": "0"}


def _text(doc: str, length: int = 256, **kwargs: object) -> pvproperty:
    """A CHAR waveform holding text, as ISISDAE's TITLE and friends are."""
    return pvproperty(value="", dtype=ChannelType.CHAR, max_length=length,
                      string_encoding="utf-8", doc=doc, **kwargs)


def _string(name: str, doc: str = "", **kwargs: object) -> pvproperty:
    """A DBR_STRING PV (40 characters), as stringin records are."""
    return pvproperty(name=name, value="", dtype=ChannelType.STRING, read_only=True, doc=doc,
                      **kwargs)


def _is_one(value: object) -> bool:
    return str(value).strip() in ("1", "On", "True")


def _iso(ns: int) -> str:
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")


def _isis_time(ns: int) -> str:
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%d-%b-%Y %H:%M:%S").upper()


async def write_changed(pairs) -> None:
    """Write each (pvproperty, value) whose value differs: monitors fire on change only."""
    for prop, value in pairs:
        if prop.value != value:
            await prop.write(value)


async def write_age(prop, age_s: float) -> None:
    """A heartbeat age, updated in half-second steps (and when it appears or goes)."""
    age = round(age_s, 1)
    if abs(age - prop.value) >= 0.5 or (age < 0) != (prop.value < 0):
        await prop.write(age)


class DaePVs(PVGroup):
    """Run control with ISISDAE names: put 1 to BEGINRUN/ENDRUN/PAUSERUN/RESUMERUN/ABORTRUN.
    A command that the run state does not allow fails the put and says why in ERRMSGS."""

    beginrun = pvproperty(name="BEGINRUN", doc="Begin a run", **_BO)
    beginrunex = pvproperty(name="BEGINRUNEX", value=0, record="longout",
                            doc="Begin a run with options (bit 0: begin paused)")
    endrun = pvproperty(name="ENDRUN", doc="End the run", **_BO)
    pauserun = pvproperty(name="PAUSERUN", doc="Pause counting", **_BO)
    resumerun = pvproperty(name="RESUMERUN", doc="Resume counting", **_BO)
    abortrun = pvproperty(name="ABORTRUN", doc="Abort the run", **_BO)

    runstate = pvproperty(name="RUNSTATE", value=RunState.SETUP.name, dtype=ChannelType.ENUM,
                          enum_strings=tuple(s.name for s in RunState), record="mbbi",
                          read_only=True, doc="Run state (ISISDAE numbering)")
    runstate_str = _string("RUNSTATE_STR", "Run state as text", record="stringin")
    runnumber = _string("RUNNUMBER", "Run number, zero padded", record="stringin")
    irunnumber = pvproperty(name="IRUNNUMBER", value=0, read_only=True)
    title = _text("Title of the current run", read_only=True, name="TITLE")
    title_sp = _text("Title for the next run", name="TITLE:SP")
    username = _text("Users of the current run", name="_USERNAME", read_only=True)
    username_sp = _text("Users (comma separated)", name="_USERNAME:SP")
    rbnumber = _text("Experiment (RB) number", length=64, name="_RBNUMBER", read_only=True)
    rbnumber_sp = _text("Experiment (RB) number for the next run", length=64,
                        name="_RBNUMBER:SP")
    starttime = _string("STARTTIME", "Run start, local time, ISIS format")
    start_time = _string("START_TIME", "Run start, ISO 8601 UTC")
    stop_time = _string("STOP_TIME", "Run stop, ISO 8601 UTC")
    runduration = pvproperty(name="RUNDURATION", value=0, read_only=True, units="s")
    totalcounts = pvproperty(name="TOTALCOUNTS", value=0, read_only=True)
    goodframes = pvproperty(name="GOODFRAMES", value=0, read_only=True)
    rawframes = pvproperty(name="RAWFRAMES", value=0, read_only=True)
    gooduah = pvproperty(name="GOODUAH", value=0.0, read_only=True, precision=3, units="uAh",
                         doc="Proton charge in good frames")
    countrate = pvproperty(name="COUNTRATE", value=0.0, read_only=True, precision=1,
                           units="events/s")
    numperiods = pvproperty(name="NUMPERIODS", value=1, read_only=True,
                            doc="Periods: frame k of a run counts into period k % NUMPERIODS")
    errmsgs = _text("Last error message of run control", length=1024, name="ERRMSGS",
                    read_only=True)

    @property
    def control(self) -> RunControl:
        return self.parent.control

    async def _command(self, action: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, action)
        except Exception:
            await self.errmsgs.write(self.control.error_message())
            await self.refresh()
            raise
        await self.refresh()

    @beginrun.putter
    async def beginrun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.begin)
        return "0"

    @beginrunex.putter
    async def beginrunex(self, instance, value):
        await self._command(functools.partial(self.control.begin, paused=bool(int(value) & 1)))
        return 0

    @endrun.putter
    async def endrun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.end)
        return "0"

    @pauserun.putter
    async def pauserun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.pause)
        return "0"

    @resumerun.putter
    async def resumerun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.resume)
        return "0"

    @abortrun.putter
    async def abortrun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.abort)
        return "0"

    @title_sp.putter
    async def title_sp(self, instance, value):
        self.control.settings.title = value
        if self.control.state is RunState.SETUP:
            await self.title.write(value)
        return value

    @username_sp.putter
    async def username_sp(self, instance, value):
        self.control.settings.users = value
        if self.control.state is RunState.SETUP:
            await self.username.write(value)
        return value

    @rbnumber_sp.putter
    async def rbnumber_sp(self, instance, value):
        self.control.settings.rb_number = value
        if self.control.state is RunState.SETUP:
            await self.rbnumber.write(value)
        return value

    @runstate.scan(period=0.1)
    async def runstate(self, instance, async_lib):
        # the writer's PVs first: when ENDING turns SETUP, LASTFILE already names the file
        await self.parent.filewriter.refresh()
        await self.parent.forwarder.refresh()
        self.control.tick()
        await self.refresh()
        self.parent.on_scan()

    async def _set(self, prop, value) -> None:
        await write_changed(((prop, value),))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the scan and a putter both refresh; interleaved at their awaits, an older counter
        # value could be written last
        self._refresh_lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._refresh_lock:
            await self._refresh()

    async def _refresh(self) -> None:
        control = self.control
        state = control.state
        run = control.run
        # counters before the state: a client that sees SETUP already reads the final counts
        counters = control.dae.counters()
        await self._set(self.totalcounts, counters.total_counts)
        await self._set(self.goodframes, counters.good_frames)
        await self._set(self.rawframes, counters.raw_frames)
        await self._set(self.countrate, counters.count_rate)
        await self._set(self.gooduah, round(counters.good_uah, 3))
        await self._set(self.numperiods, control.dae.periods)
        await self._set(self.runstate, state.name)
        await self._set(self.runstate_str, state.name)
        await self._set(self.runnumber, f"{run.run_number:08d}")
        await self._set(self.irunnumber, run.run_number)
        if run.start_ns:
            await self._set(self.title, run.title)
            await self._set(self.username, ", ".join(run.users))
            await self._set(self.rbnumber, run.rb_number)
            await self._set(self.starttime, _isis_time(run.start_ns))
            await self._set(self.start_time, _iso(run.start_ns))
            await self._set(self.stop_time, _iso(run.stop_ns))
            end_ns = run.stop_ns or (control.clock_ns() if state is not RunState.SETUP else 0)
            await self._set(self.runduration, max(0, (end_ns - run.start_ns) // 1_000_000_000))
        await self._set(self.errmsgs, control.error_message())


class FileWriterPVs(PVGroup):
    """The file writer as the IOC sees it through its x5f2/answ/wrdn messages."""

    state = pvproperty(name="STATE", value=WriterState.UNAVAILABLE.name, dtype=ChannelType.ENUM,
                       enum_strings=tuple(s.name for s in WriterState), record="mbbi",
                       read_only=True)
    filename = _text("File being written", name="FILENAME", read_only=True)
    jobid = _string("JOBID", "Job id of the file being written")
    message = _text("Last message from the file writer", length=1024, name="MESSAGE",
                    read_only=True)
    lastfile = _text("Last file finished", name="LASTFILE", read_only=True)
    heartbeat_age = pvproperty(name="HEARTBEAT_AGE", value=-1.0, read_only=True, precision=1,
                               units="s", doc="Seconds since the writer's last status (-1: never)")
    # a write job without a DAE run: set the file name and structure file, then START / STOP
    job_filename_sp = _text("File name of a standalone write job", name="JOB:FILENAME_SP")
    job_structure_sp = _text("Path of its nexus_structure JSON file", length=1024,
                             name="JOB:STRUCTURE_SP")
    job_start = pvproperty(name="JOB:START", doc="Start the standalone write job", **_BO)
    job_stop = pvproperty(name="JOB:STOP", doc="Stop the standalone write job", **_BO)
    job_id = _string("JOB:ID", "Job id of the standalone job being written (empty: none)")
    job_errmsg = _text("Why the last standalone job command was refused", length=1024,
                       name="JOB:ERRMSG", read_only=True)

    @property
    def status(self) -> WriterStatus:
        return self.parent.writer_status

    @property
    def standalone(self) -> StandaloneJob:
        return self.parent.standalone_job

    async def _job_command(self, action: Callable[[], object]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, action)
        except JobRefused as exc:
            log.warning("standalone job command refused: %s", exc)
            await self.job_errmsg.write(str(exc))
            raise
        await write_changed(((self.job_errmsg, ""), (self.job_id, self.standalone.job_id)))

    @job_start.putter
    async def job_start(self, instance, value):
        if _is_one(value):
            await self._job_command(functools.partial(
                self.standalone.start, self.job_filename_sp.value, self.job_structure_sp.value))
        return "0"

    @job_stop.putter
    async def job_stop(self, instance, value):
        if _is_one(value):
            await self._job_command(self.standalone.stop)
        return "0"

    async def refresh(self) -> None:
        """Called by the run-control scan, so both groups change in one consistent order."""
        view = self.status.view(self.parent.control.active_job() or self.standalone.job_id)
        await write_changed(((self.state, view.state.name), (self.filename, view.filename),
                             (self.jobid, view.job_id), (self.message, view.message),
                             (self.lastfile, view.last_file),
                             (self.job_id, self.standalone.job_id)))
        await write_age(self.heartbeat_age, view.heartbeat_age_s)


class ForwarderPVs(PVGroup):
    """The forwarder as the IOC sees it through its x5f2 status messages."""

    state = pvproperty(name="STATE", value=ForwarderState.UNAVAILABLE.name,
                       dtype=ChannelType.ENUM, enum_strings=tuple(s.name for s in ForwarderState),
                       record="mbbi", read_only=True)
    streams = pvproperty(name="STREAMS", value=0, read_only=True, doc="PVs configured")
    connected = pvproperty(name="CONNECTED", value=0, read_only=True, doc="PVs connected")
    update_rate = pvproperty(name="UPDATERATE", value=0.0, read_only=True, precision=1,
                             units="1/s", doc="PV updates received per second")
    dropped = pvproperty(name="DROPPED", value=0, read_only=True,
                         doc="updates not forwarded (old, implausible time, full queue, errors)")
    heartbeat_age = pvproperty(name="HEARTBEAT_AGE", value=-1.0, read_only=True, precision=1,
                               units="s", doc="Seconds since the forwarder's last status")

    @property
    def status(self) -> ForwarderStatus:
        return self.parent.forwarder_status

    async def refresh(self) -> None:
        view = self.status.view()
        await write_changed(((self.state, view.state.name), (self.streams, view.streams),
                             (self.connected, view.connected), (self.dropped, view.dropped),
                             (self.update_rate, round(view.updates_per_s, 1))))
        await write_age(self.heartbeat_age, view.heartbeat_age_s)


class RunControlIOC(PVGroup):
    """Run-control IOC of an ISIS-style instrument: <prefix>DAE: run control with a simulated
    DAE streaming events to Kafka, <prefix>FILEWRITER: file-writer status."""

    dae = SubGroup(DaePVs, prefix="DAE:")
    filewriter = SubGroup(FileWriterPVs, prefix="FILEWRITER:")
    forwarder = SubGroup(ForwarderPVs, prefix="FORWARDER:")

    def __init__(self, *args, control: RunControl, writer_status: WriterStatus,
                 forwarder_status: ForwarderStatus, standalone_job: StandaloneJob,
                 simulated_dae: SimulatedDae | None = None, **kwargs) -> None:
        self.control = control
        self.writer_status = writer_status
        self.standalone_job = standalone_job
        self.forwarder_status = forwarder_status
        self.simulated_dae = simulated_dae
        # called after each 0.1 s scan: proof for /healthz that the CA server's loop runs
        self.on_scan: Callable[[], None] = lambda: None
        super().__init__(*args, **kwargs)
