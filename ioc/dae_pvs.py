"""ISISDAE's PVs under <prefix>DAE:, with its record types, fields and semantics, so that
IBEX, genie_python and ibex_bluesky_core work unchanged (the spectra, SPECDATA, SPECINTEGRALS,
NUMSPECTRA and NUMTIMECHANNELS are the live view's: it holds the histograms).

- Commands: BEGINRUN, BEGINRUNEX, ENDRUN, PAUSERUN, RESUMERUN, ABORTRUN, each with its `_`
  companion (ISISDAE runs pre/post commands for the plain name and skips them for the `_` one;
  there are none here, so both do the same). A refused command fails the put, sets
  STAT=WRITE/SEVR=INVALID on the `_` record (which genie reads) and says why in ERRMSGS; an
  accepted one clears both. SAVERUN, UPDATERUN, STORERUN: the file is written as the run goes,
  so there is nothing to save; RECOVERRUN and SNAPSHOTCRPT are refused with the reason.
- ENDRUN's put completes once the file writer has closed the file (SETUP), as ISISDAE's
  synchronous end does: a client that puts with a callback then reads the final counts.
- Settings as ISISDAE exchanges them (DAESETTINGS, TCBSETTINGS, HARDWAREPERIODS,
  UPDATESETTINGS and their :SP), taken only in SETUP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import time
import zlib
from collections.abc import Callable

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty

from ioc.dae_settings import (
    PERIOD_TYPE_NAMES,
    TIMING_SOURCES,
    DaeSetup,
    Periods,
    Tcb,
    Updates,
)
from ioc.labview_xml import MAX_XML_BYTES, SettingsError, compress_hex, dehex_decompress
from ioc.run_control import RunControl
from ioc.runstate import RunState
from ioc.simulated_dae import PeriodPlan

log = logging.getLogger(__name__)

_BO = {"dtype": ChannelType.ENUM, "enum_strings": ("0", "1"), "record": "bo", "value": "0"}
_NO_YES = {"dtype": ChannelType.ENUM, "enum_strings": ("No", "Yes"), "record": "bi",
           "value": "No"}


def text(doc: str, length: int = 256, **kwargs: object) -> pvproperty:
    """A CHAR waveform holding text, as ISISDAE's TITLE and friends are."""
    return pvproperty(value="", dtype=ChannelType.CHAR, max_length=length,
                      string_encoding="utf-8", record="waveform", doc=doc, **kwargs)


def string(name: str, doc: str = "", **kwargs: object) -> pvproperty:
    """A DBR_STRING PV (40 characters), as stringin records are."""
    return pvproperty(name=name, value="", dtype=ChannelType.STRING, read_only=True, doc=doc,
                      record="stringin", **kwargs)


def _long(name: str, doc: str = "", units: str = "", **kwargs: object) -> pvproperty:
    return pvproperty(name=name, value=0, read_only=True, record="longin", units=units,
                      doc=doc, **kwargs)


def _ai(name: str, doc: str = "", units: str = "", **kwargs: object) -> pvproperty:
    return pvproperty(name=name, value=0.0, read_only=True, record="ai", precision=3,
                      units=units, doc=doc, **kwargs)


def _is_one(value: object) -> bool:
    return str(value).strip() in ("1", "On", "True")


def _iso(ns: int) -> str:
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def isis_time(ns: int) -> str:
    """ISISDAE's STARTTIME, local time: "Sat 05-Dec-2026 10:10:04" (genie parses it with
    "%a %d-%b-%Y %H:%M:%S"); English names whatever the host's locale."""
    if not ns:
        return ""
    t = dt.datetime.fromtimestamp(ns / 1e9)
    return (f"{_DAYS[t.weekday()]} {t.day:02d}-{_MONTHS[t.month - 1]}-{t.year} "
            f"{t:%H:%M:%S}")


def file_list(paths: list[str]) -> str:
    """WIRINGTABLES and friends: a JSON list of paths, zlib-compressed and hex-encoded."""
    return compress_hex(json.dumps(paths))


async def write_changed(pairs) -> None:
    """Write each (pvproperty, value) whose value differs: monitors fire on change only."""
    for prop, value in pairs:
        if prop.value != value:
            await prop.write(value)


async def _alarm(prop, ok: bool) -> None:
    if ok:
        if prop.alarm.severity != AlarmSeverity.NO_ALARM:
            await prop.alarm.write(status=AlarmStatus.NO_ALARM,
                                   severity=AlarmSeverity.NO_ALARM)
    else:
        await prop.alarm.write(status=AlarmStatus.WRITE, severity=AlarmSeverity.INVALID_ALARM)


class DaePVs(PVGroup):
    """Run control with ISISDAE names: put 1 to BEGINRUN/ENDRUN/PAUSERUN/RESUMERUN/ABORTRUN.
    A command that the run state does not allow fails the put and says why in ERRMSGS."""

    beginrun = pvproperty(name="BEGINRUN", doc="Begin a run", **_BO)
    beginrun_ = pvproperty(name="BEGINRUN_", doc="Begin a run (no pre/post commands)", **_BO)
    beginrunex = pvproperty(name="BEGINRUNEX", value=0, record="longout",
                            doc="Begin a run with options (bit 0: paused, bit 1: delayed)")
    beginrunex_ = pvproperty(name="BEGINRUNEX_", value=0, record="longout",
                             doc="BEGINRUNEX without pre/post commands")
    endrun = pvproperty(name="ENDRUN", doc="End the run", **_BO)
    endrun_ = pvproperty(name="ENDRUN_", doc="End the run (no pre/post commands)", **_BO)
    pauserun = pvproperty(name="PAUSERUN", doc="Pause counting", **_BO)
    pauserun_ = pvproperty(name="PAUSERUN_", doc="Pause (no pre/post commands)", **_BO)
    resumerun = pvproperty(name="RESUMERUN", doc="Resume counting", **_BO)
    resumerun_ = pvproperty(name="RESUMERUN_", doc="Resume (no pre/post commands)", **_BO)
    abortrun = pvproperty(name="ABORTRUN", doc="Abort the run: its data are discarded", **_BO)
    abortrun_ = pvproperty(name="ABORTRUN_", doc="Abort (no pre/post commands)", **_BO)
    recoverrun = pvproperty(name="RECOVERRUN", doc="Recover an aborted run (refused here)",
                            **_BO)
    saverun = pvproperty(name="SAVERUN", doc="Save the run (the file is written as it goes)",
                         **_BO)
    updaterun = pvproperty(name="UPDATERUN", doc="Update the run's data (always current here)",
                           **_BO)
    storerun = pvproperty(name="STORERUN", doc="Store the run (the file is written as it goes)",
                          **_BO)
    snapshotcrpt = text("Snapshot the run's data to a file (refused here)", 1024,
                        name="SNAPSHOTCRPT")
    statetrans = pvproperty(name="STATETRANS", read_only=True, doc="A command is executing",
                            **_NO_YES)
    state_changing = pvproperty(name="STATE:CHANGING", read_only=True,
                                doc="Settings are being changed", **_NO_YES)

    runstate = pvproperty(name="RUNSTATE", value=RunState.SETUP.name, dtype=ChannelType.ENUM,
                          enum_strings=tuple(s.name for s in RunState), record="mbbi",
                          read_only=True, doc="Run state (ISISDAE numbering)")
    runstate_str = string("RUNSTATE_STR", "Run state as text")
    runnumber = string("RUNNUMBER", "Run number, zero padded")
    irunnumber = _long("IRUNNUMBER", "Run number")
    title = text("Title of the current run", read_only=True, name="TITLE")
    title_sp = text("Title for the next run", name="TITLE:SP")
    title_display = pvproperty(name="TITLE:DISPLAY", doc="Show title and users publicly",
                               **(_NO_YES | {"record": "bo"}))
    username = text("Users of the current run", 1024, name="_USERNAME", read_only=True)
    username_sp = text("Users (comma separated)", 1024, name="_USERNAME:SP")
    rbnumber = text("Experiment (RB) number", 64, name="_RBNUMBER", read_only=True)
    rbnumber_sp = text("Experiment (RB) number for the next run", 64, name="_RBNUMBER:SP")
    instname = string("INSTNAME", "Instrument name")
    isiscycle = string("ISISCYCLE", "ISIS cycle")
    starttime = string("STARTTIME", "Run start, local time, ISISDAE's format")
    start_time = string("START_TIME", "Run start, ISO 8601 UTC")
    stop_time = string("STOP_TIME", "Run stop, ISO 8601 UTC")
    runduration = _long("RUNDURATION", "Seconds counted", "s")
    runduration_pd = _long("RUNDURATION_PD", "Seconds counted in the current period", "s")
    totalcounts = _long("TOTALCOUNTS", "Events counted", "count")
    events = _long("EVENTS", "Events counted (as TOTALCOUNTS)", "event")
    mevents = _ai("MEVENTS", "Events counted, millions", "Mevent")
    totaldaecounts = _ai("TOTALDAECOUNTS", "Events counted, millions", "Mcount")
    goodframes = _long("GOODFRAMES", "Good frames")
    rawframes = _long("RAWFRAMES", "Raw frames")
    goodframes_pd = _long("GOODFRAMES_PD", "Good frames of the current period")
    rawframes_pd = _long("RAWFRAMES_PD", "Raw frames of the current period")
    gooduah = _ai("GOODUAH", "Proton charge in good frames", "uA hour")
    gooduah_pd = _ai("GOODUAH_PD", "Proton charge in good frames of the current period",
                     "uA hour")
    totaluamps = _ai("TOTALUAMPS", "Proton charge in all frames", "uA hour")
    beamcurrent = _ai("BEAMCURRENT", "Proton beam current", "uA")
    countrate = pvproperty(name="COUNTRATE", value=0.0, read_only=True, precision=1,
                           record="ai", units="events/s")
    npratio = _ai("NPRATIO", "Events per µAh of proton charge, millions")
    eventmodefraction = _ai("EVENTMODEFRACTION", "Fraction of spectra in event mode")
    eventmodebufused = _ai("EVENTMODEBUFUSED", "Event-mode buffer used")
    eventmodefilemb = _ai("EVENTMODEFILEMB", "Event-mode file size", "MB")
    eventmodedatarate = _ai("EVENTMODEDATARATE", "Event-mode data rate", "MB /s")
    daememoryused = _long("DAEMEMORYUSED", "DAE memory used", "byte")
    sim_mode = pvproperty(name="SIM_MODE", read_only=True, doc="The DAE is simulated",
                          **_NO_YES)
    daetimingsource = string("DAETIMINGSOURCE", "Timing source")
    monitorspectrum = _long("MONITORSPECTRUM", "Monitor spectrum (DAESETTINGS)")
    monitorcounts = _long("MONITORCOUNTS", "Events of the beam monitors", "count")
    monitorfrom = _ai("MONITORFROM", "Monitor integral from", "us")
    monitorto = _ai("MONITORTO", "Monitor integral to", "us")

    period = _long("PERIOD", "Current period")
    period_sp = pvproperty(name="PERIOD:SP", value=1, record="longout",
                           doc="Period that frames count into (software periods)")
    numperiods = _long("NUMPERIODS", "Number of periods")
    numperiods_sp = pvproperty(name="NUMPERIODS:SP", value=1, record="longout",
                               doc="Number of software periods (SETUP only)")
    numperiods_max = _long("NUMPERIODS:MAX", "Most periods allowed")
    periodtype = string("PERIODTYPE", "Software or hardware periods")
    periodseq = _long("PERIODSEQ", "Hardware period sequences")

    daesettings = text("DAE settings (LabVIEW cluster XML)", 10000, name="DAESETTINGS",
                       read_only=True)
    daesettings_sp = text("DAE settings to set (SETUP only)", 10000, name="DAESETTINGS:SP")
    tcbsettings = text("Time channel boundaries (zlib, hex XML)", 10000, name="TCBSETTINGS",
                       read_only=True)
    tcbsettings_sp = text("Time channel boundaries to set (SETUP only)", 10000,
                          name="TCBSETTINGS:SP")
    hardwareperiods = text("Period settings (XML)", 10000, name="HARDWAREPERIODS",
                           read_only=True)
    hardwareperiods_sp = text("Period settings to set (SETUP only)", 10000,
                              name="HARDWAREPERIODS:SP")
    updatesettings = text("Update settings (XML)", 10000, name="UPDATESETTINGS",
                          read_only=True)
    updatesettings_sp = text("Update settings to set (SETUP only)", 10000,
                             name="UPDATESETTINGS:SP")
    autosave_freq = _long("AUTOSAVE:FREQ", "Autosave frequency (UPDATESETTINGS)")
    autosave_freq_sp = pvproperty(name="AUTOSAVE:FREQ:SP", value=5000, record="longout",
                                  doc="Autosave frequency (kept, not acted on)")
    wiringtables = text("Wiring tables (zlib, hex JSON list)", 16384, name="WIRINGTABLES",
                        read_only=True)
    spectratables = text("Spectra tables (zlib, hex JSON list)", 16384, name="SPECTRATABLES",
                         read_only=True)
    detectortables = text("Detector tables (zlib, hex JSON list)", 16384,
                          name="DETECTORTABLES", read_only=True)
    periodfiles = text("Period files (zlib, hex JSON list)", 16384, name="PERIODFILES",
                       read_only=True)
    tcbfiles = text("TCB files (zlib, hex JSON list)", 16384, name="TCBFILES",
                    read_only=True)
    errmsgs = text("Last error message of run control", 4096, name="ERRMSGS", read_only=True)
    allmsgs = text("Recent messages of run control", 4096, name="ALLMSGS", read_only=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the scan and a putter both refresh; interleaved at their awaits, an older counter
        # value could be written last
        self._refresh_lock = asyncio.Lock()
        self.setup = DaeSetup()
        self.updates = Updates()
        self._setup_ready = False

    @property
    def control(self) -> RunControl:
        return self.parent.control

    # -- commands --
    async def _command(self, action: Callable[[], object], *records) -> None:
        """Run a command; its records' alarms and ERRMSGS say whether it was taken."""
        loop = asyncio.get_running_loop()
        await self.statetrans.write("Yes")
        try:
            await loop.run_in_executor(None, action)
        except Exception:
            for record in records:
                await _alarm(record, False)
            await self.errmsgs.write(self.control.error_message())
            raise
        finally:
            await self.statetrans.write("No")
            await self.refresh()
        for record in records:
            await _alarm(record, True)

    async def _begin(self, value, *records) -> None:
        options = int(value)
        if options & 2:
            await self._refuse("BEGINRUNEX refused: a delayed begin (option 2) waits for a "
                               "hardware signal the simulated DAE does not have", *records)
        await self._command(functools.partial(self.control.begin, paused=bool(options & 1)),
                            *records)

    async def _refuse(self, message: str, *records) -> None:
        self.control.note_error(message)
        for record in records:
            await _alarm(record, False)
        await self.errmsgs.write(message)
        raise ValueError(message)

    @beginrun.putter
    async def beginrun(self, instance, value):
        if _is_one(value):
            await self._begin(0, self.beginrun, self.beginrun_)
        return "0"

    @beginrun_.putter
    async def beginrun_(self, instance, value):
        if _is_one(value):
            await self._begin(0, self.beginrun_)
        return "0"

    @beginrunex.putter
    async def beginrunex(self, instance, value):
        await self._begin(value, self.beginrunex, self.beginrunex_)
        return value

    @beginrunex_.putter
    async def beginrunex_(self, instance, value):
        await self._begin(value, self.beginrunex_)
        return value

    async def _end(self, *records) -> None:
        await self._command(self.control.end, *records)
        # as ISISDAE's end, the put completes with the run saved: once the writer has the
        # file closed (or run control gave up waiting), unless the stop itself is still to
        # be delivered (the broker is down: ERRMSGS says so and the state stays ENDING)
        deadline = time.monotonic() + self.control.end_timeout_s + 5
        while (self.control.state is RunState.ENDING and not self.control.stop_pending
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)

    @endrun.putter
    async def endrun(self, instance, value):
        if _is_one(value):
            await self._end(self.endrun, self.endrun_)
        return "0"

    @endrun_.putter
    async def endrun_(self, instance, value):
        if _is_one(value):
            await self._end(self.endrun_)
        return "0"

    @pauserun.putter
    async def pauserun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.pause, self.pauserun, self.pauserun_)
        return "0"

    @pauserun_.putter
    async def pauserun_(self, instance, value):
        if _is_one(value):
            await self._command(self.control.pause, self.pauserun_)
        return "0"

    @resumerun.putter
    async def resumerun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.resume, self.resumerun, self.resumerun_)
        return "0"

    @resumerun_.putter
    async def resumerun_(self, instance, value):
        if _is_one(value):
            await self._command(self.control.resume, self.resumerun_)
        return "0"

    @abortrun.putter
    async def abortrun(self, instance, value):
        if _is_one(value):
            await self._command(self.control.abort, self.abortrun, self.abortrun_)
        return "0"

    @abortrun_.putter
    async def abortrun_(self, instance, value):
        if _is_one(value):
            await self._command(self.control.abort, self.abortrun_)
        return "0"

    @recoverrun.putter
    async def recoverrun(self, instance, value):
        if _is_one(value):
            await self._refuse("RECOVERRUN refused: an aborted run's events are discarded "
                               "with its file; begin a new run", self.recoverrun)
        return "0"

    async def _nothing_to_save(self, record, name: str) -> None:
        state = self.control.state
        if state not in (RunState.RUNNING, RunState.PAUSED):
            await self._refuse(f"{name} refused: run state is {state.name}, must be RUNNING "
                               "or PAUSED", record)
        await _alarm(record, True)

    @saverun.putter
    async def saverun(self, instance, value):
        if _is_one(value):
            await self._nothing_to_save(self.saverun, "SAVERUN")
        return "0"

    @updaterun.putter
    async def updaterun(self, instance, value):
        if _is_one(value):
            await self._nothing_to_save(self.updaterun, "UPDATERUN")
        return "0"

    @storerun.putter
    async def storerun(self, instance, value):
        if _is_one(value):
            await self._nothing_to_save(self.storerun, "STORERUN")
        return "0"

    @snapshotcrpt.putter
    async def snapshotcrpt(self, instance, value):
        await self._refuse("SNAPSHOTCRPT refused: there is no CRPT here; the run's file is "
                           "written as the run goes", self.snapshotcrpt)

    # -- run metadata for the next run --
    @title_sp.putter
    async def title_sp(self, instance, value):
        self.control.settings.title = value
        if self.control.state is RunState.SETUP:
            await self.title.write(value)
        return value

    @username_sp.putter
    async def username_sp(self, instance, value):
        await self.set_users(value)
        return value

    async def set_users(self, users: str) -> None:
        self.control.settings.users = users
        if self.control.state is RunState.SETUP:
            await self.username.write(users)
        if self.username_sp.value != users:
            await self.username_sp.write(users, verify_value=False)

    @rbnumber_sp.putter
    async def rbnumber_sp(self, instance, value):
        await self.set_rb_number(value)
        return value

    async def set_rb_number(self, rb: str) -> None:
        self.control.settings.rb_number = rb
        if self.control.state is RunState.SETUP:
            await self.rbnumber.write(rb)
        if self.rbnumber_sp.value != rb:
            await self.rbnumber_sp.write(rb, verify_value=False)
        await self.parent.ed.show_rb(rb)

    # -- periods --
    @period_sp.putter
    async def period_sp(self, instance, value):
        try:
            self.control.dae.set_period(int(value))
        except ValueError as exc:
            await self._refuse(f"PERIOD:SP refused: {exc}", self.period_sp)
        await _alarm(self.period_sp, True)
        await self.refresh()
        return value

    @numperiods_sp.putter
    async def numperiods_sp(self, instance, value):
        periods = self.control.periods
        await self._apply(self.numperiods_sp, "Number of periods", lambda: Periods(
            0, int(value), periods.sequences, periods.output_delay_us, periods.slots))
        return value

    def _apply_periods(self, periods: Periods) -> None:
        if periods.period_type == 0:
            plan = PeriodPlan(periods.number)
        else:
            plan = PeriodPlan(periods.number, tuple(
                (i, slot.frames, slot.kind == 2)
                for i, slot in enumerate(s for s in periods.slots if s.kind != 0)))
        self.control.dae.set_periods(plan)
        self.control.periods = periods

    # -- settings documents --
    async def _apply(self, record, what: str, make: Callable[[], object]) -> None:
        """Check and apply new settings in SETUP (as ISISDAE), with STATE:CHANGING up
        meanwhile; a refusal fails the put, sets the :SP record's alarm and ERRMSGS."""
        state = self.control.state
        if state is not RunState.SETUP:
            await self._refuse(f"Can only change {what} in SETUP (run state is {state.name})",
                               record)
        await write_changed(((self.statetrans, "Yes"), (self.state_changing, "Yes")))
        try:
            settings = make()
            if isinstance(settings, Periods):
                self._apply_periods(settings)
            elif isinstance(settings, Tcb):
                self.control.settings.tcb = settings
            elif isinstance(settings, DaeSetup):
                self.setup = settings
            elif isinstance(settings, Updates):
                self.updates = settings
        except (SettingsError, ValueError) as exc:
            await write_changed(((self.statetrans, "No"), (self.state_changing, "No")))
            await self._refuse(f"{what} refused: {exc}", record)
        await write_changed(((self.statetrans, "No"), (self.state_changing, "No")))
        await _alarm(record, True)
        log.info("%s changed", what)
        await self.show_settings()

    @staticmethod
    def _document(value: str) -> str:
        if len(value) > MAX_XML_BYTES:
            raise SettingsError(f"over {MAX_XML_BYTES} bytes")
        return value

    @daesettings_sp.putter
    async def daesettings_sp(self, instance, value):
        await self._apply(self.daesettings_sp, "DAE settings",
                          lambda: self.setup.updated(self._document(value)))
        return value

    @tcbsettings_sp.putter
    async def tcbsettings_sp(self, instance, value):
        await self._apply(self.tcbsettings_sp, "TCB settings", lambda: (
            self.control.settings.tcb.updated(dehex_decompress(self._document(value)))))
        return value

    @hardwareperiods_sp.putter
    async def hardwareperiods_sp(self, instance, value):
        await self._apply(self.hardwareperiods_sp, "Hardware period settings",
                          lambda: self.control.periods.updated(self._document(value)))
        return value

    @updatesettings_sp.putter
    async def updatesettings_sp(self, instance, value):
        await self._apply(self.updatesettings_sp, "Update settings",
                          lambda: self.updates.updated(self._document(value)))
        return value

    @autosave_freq_sp.putter
    async def autosave_freq_sp(self, instance, value):
        if not 0 <= int(value) < 2**31:
            raise ValueError("AUTOSAVE:FREQ:SP: 0 or more")
        self.updates = Updates(int(value), self.updates.units, self.updates.dashboard_interval)
        await self.show_settings()
        return value

    async def show_settings(self) -> None:
        periods = self.control.periods
        setup = self.setup
        await write_changed((
            (self.daesettings, setup.xml()),
            (self.tcbsettings, compress_hex(self.control.settings.tcb.xml())),
            (self.hardwareperiods, periods.xml()),
            (self.updatesettings, self.updates.xml()),
            (self.autosave_freq, self.updates.frequency),
            (self.periodtype, PERIOD_TYPE_NAMES[periods.period_type]),
            (self.periodseq, periods.sequences),
            (self.numperiods, self.control.dae.periods),
            (self.daetimingsource, TIMING_SOURCES[setup.timing_source]),
            (self.monitorspectrum, setup.monitor_spectrum),
            (self.monitorfrom, setup.monitor_from_us),
            (self.monitorto, setup.monitor_to_us)))

    # -- the scan --
    @runstate.scan(period=0.1)
    async def runstate(self, instance, async_lib):
        if not self._setup_ready:
            await self.startup()
        # the writer's PVs first: when ENDING turns SETUP, LASTFILE already names the file
        await self.parent.filewriter.refresh()
        await self.parent.forwarder.refresh()
        self.control.tick()
        await self.refresh()
        self.parent.on_scan()

    async def startup(self) -> None:
        """Values that change only with settings, once the server runs."""
        self._setup_ready = True
        empty = file_list([])
        await write_changed((
            (self.instname, self.control.instrument),
            (self.sim_mode, "Yes" if self.parent.simulated_dae is not None else "No"),
            (self.numperiods_max, 10_000), (self.eventmodefraction, 1.0),
            (self.wiringtables, empty), (self.spectratables, empty),
            (self.detectortables, empty), (self.periodfiles, empty), (self.tcbfiles, empty)))
        await self.show_settings()

    async def refresh(self) -> None:
        async with self._refresh_lock:
            await self._refresh()

    async def _refresh(self) -> None:
        control = self.control
        state = control.state
        run = control.run
        # counters before the state: a client that sees SETUP already reads the final counts
        c = control.dae.counters()
        index = c.period - 1
        frames_pd = c.period_good_frames[index] if index < len(c.period_good_frames) else 0
        uah_pd = c.period_good_uah[index] if index < len(c.period_good_uah) else 0.0
        seconds_pd = c.period_seconds[index] if index < len(c.period_seconds) else 0.0
        await write_changed((
            (self.totalcounts, c.total_counts), (self.events, c.total_counts),
            (self.mevents, round(c.total_counts / 1e6, 6)),
            (self.totaldaecounts, round(c.total_counts / 1e6, 6)),
            (self.goodframes, c.good_frames), (self.rawframes, c.raw_frames),
            (self.goodframes_pd, frames_pd), (self.rawframes_pd, frames_pd),
            (self.countrate, c.count_rate), (self.gooduah, round(c.good_uah, 6)),
            (self.gooduah_pd, round(uah_pd, 6)), (self.totaluamps, round(c.good_uah, 6)),
            (self.npratio, round(c.total_counts / 1e6 / c.good_uah, 6) if c.good_uah else 0.0),
            (self.beamcurrent, c.beam_current_ua), (self.monitorcounts, c.monitor_counts),
            (self.runduration_pd, int(seconds_pd)),
            (self.period, c.period), (self.numperiods, control.dae.periods)))
        await write_changed((
            (self.runstate, state.name), (self.runstate_str, state.name),
            (self.runnumber, f"{run.run_number:08d}"), (self.irunnumber, run.run_number)))
        if state is RunState.SETUP:  # what the next run will have
            settings = control.settings
            await write_changed(((self.title, settings.title),
                                 (self.username, settings.users),
                                 (self.rbnumber, settings.rb_number)))
        else:
            await write_changed(((self.title, run.title),
                                 (self.username, ", ".join(run.users)),
                                 (self.rbnumber, run.rb_number)))
        if run.start_ns:
            end_ns = run.stop_ns or (control.clock_ns() if state is not RunState.SETUP else 0)
            await write_changed((
                (self.starttime, isis_time(run.start_ns)),
                (self.start_time, _iso(run.start_ns)), (self.stop_time, _iso(run.stop_ns)),
                (self.runduration, max(0, (end_ns - run.start_ns) // 1_000_000_000))))
        await write_changed(((self.errmsgs, control.error_message()),
                             (self.allmsgs, "\n".join(control.messages())[-4000:])))


def hex_json(value: object) -> str:
    """IBEX's experiment-details encoding: JSON, zlib-compressed, hex-encoded."""
    return zlib.compress(json.dumps(value).encode()).hex()
