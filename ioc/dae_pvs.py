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
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from ioc.dae_settings import PERIOD_TYPE_NAMES, TIMING_SOURCES, DaeConfig
from ioc.dae_tables import listed
from ioc.labview_xml import SettingsError, compress_hex, compress_hex_json, dehex_decompress
from ioc.pv_records import (
    BO,
    NO_YES,
    ai,
    is_one,
    longin,
    set_alarm,
    string,
    text,
    write_changed,
)
from ioc.run_control import RunControl
from ioc.runstate import CommandRefused, RunState

log = logging.getLogger(__name__)


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


def _runs(method: str, *records: str):
    """The putter of a command PV: a put of 1 runs run control's `method`; `records` (the PV
    and its `_` companion) carry the outcome as their alarm."""
    async def putter(group: DaePVs, instance, value):
        if is_one(value):
            await group._command(getattr(group.control, method),
                                 *(getattr(group, r) for r in records))
        return "0"
    return putter


def _begins(*records: str, options: bool = False):
    """The putter of BEGINRUN (a put of 1) or, with `options`, BEGINRUNEX (the options)."""
    async def putter(group: DaePVs, instance, value):
        if options:
            await group._begin(value, *(getattr(group, r) for r in records))
            return value
        if is_one(value):
            await group._begin(0, *(getattr(group, r) for r in records))
        return "0"
    return putter


def _ends(*records: str):
    async def putter(group: DaePVs, instance, value):
        if is_one(value):
            await group._end(*(getattr(group, r) for r in records))
        return "0"
    return putter


def _saves(name: str):
    """SAVERUN, UPDATERUN, STORERUN: the file is written as the run goes, so there is nothing
    to do while counting; refused otherwise, as ISISDAE refuses them."""
    async def putter(group: DaePVs, instance, value):
        if is_one(value):
            record = getattr(group, name.lower())
            state = group.control.state
            if state not in (RunState.RUNNING, RunState.PAUSED):
                await group._refuse(f"{name} refused: run state is {state.name}, must be "
                                    "RUNNING or PAUSED", record)
            await set_alarm(record, True)
        return "0"
    return putter


class DaePVs(PVGroup):
    """Run control with ISISDAE names: put 1 to BEGINRUN/ENDRUN/PAUSERUN/RESUMERUN/ABORTRUN.
    A command that the run state does not allow fails the put and says why in ERRMSGS."""

    beginrun = pvproperty(name="BEGINRUN", doc="Begin a run", **BO).putter(
        _begins("beginrun", "beginrun_"))
    beginrun_ = pvproperty(name="BEGINRUN_", doc="Begin a run (no pre/post commands)",
                           **BO).putter(_begins("beginrun_"))
    beginrunex = pvproperty(name="BEGINRUNEX", value=0, record="longout",
                            doc="Begin a run with options (bit 0: paused, bit 1: delayed)"
                            ).putter(_begins("beginrunex", "beginrunex_", options=True))
    beginrunex_ = pvproperty(name="BEGINRUNEX_", value=0, record="longout",
                             doc="BEGINRUNEX without pre/post commands").putter(
        _begins("beginrunex_", options=True))
    endrun = pvproperty(name="ENDRUN", doc="End the run", **BO).putter(
        _ends("endrun", "endrun_"))
    endrun_ = pvproperty(name="ENDRUN_", doc="End the run (no pre/post commands)",
                         **BO).putter(_ends("endrun_"))
    pauserun = pvproperty(name="PAUSERUN", doc="Pause counting", **BO).putter(
        _runs("pause", "pauserun", "pauserun_"))
    pauserun_ = pvproperty(name="PAUSERUN_", doc="Pause (no pre/post commands)",
                           **BO).putter(_runs("pause", "pauserun_"))
    resumerun = pvproperty(name="RESUMERUN", doc="Resume counting", **BO).putter(
        _runs("resume", "resumerun", "resumerun_"))
    resumerun_ = pvproperty(name="RESUMERUN_", doc="Resume (no pre/post commands)",
                            **BO).putter(_runs("resume", "resumerun_"))
    abortrun = pvproperty(name="ABORTRUN", doc="Abort the run: its data are discarded",
                          **BO).putter(_runs("abort", "abortrun", "abortrun_"))
    abortrun_ = pvproperty(name="ABORTRUN_", doc="Abort (no pre/post commands)",
                           **BO).putter(_runs("abort", "abortrun_"))
    recoverrun = pvproperty(name="RECOVERRUN", doc="Recover an aborted run (refused here)",
                            **BO)
    saverun = pvproperty(name="SAVERUN", doc="Save the run (the file is written as it goes)",
                         **BO).putter(_saves("SAVERUN"))
    updaterun = pvproperty(name="UPDATERUN", doc="Update the run's data (always current here)",
                           **BO).putter(_saves("UPDATERUN"))
    storerun = pvproperty(name="STORERUN", doc="Store the run (the file is written as it goes)",
                          **BO).putter(_saves("STORERUN"))
    snapshotcrpt = text("Snapshot the run's data to a file (refused here)", 1024,
                        name="SNAPSHOTCRPT")
    statetrans = pvproperty(name="STATETRANS", read_only=True, doc="A command is executing",
                            **NO_YES)
    state_changing = pvproperty(name="STATE:CHANGING", read_only=True,
                                doc="Settings are being changed", **NO_YES)

    runstate = pvproperty(name="RUNSTATE", value=RunState.SETUP.name, dtype=ChannelType.ENUM,
                          enum_strings=tuple(s.name for s in RunState), record="mbbi",
                          read_only=True, doc="Run state (ISISDAE numbering)")
    runstate_str = string("RUNSTATE_STR", "Run state as text")
    runnumber = string("RUNNUMBER", "Run number, zero padded")
    irunnumber = longin("IRUNNUMBER", "Run number")
    title = text("Title of the current run", read_only=True, name="TITLE")
    title_sp = text("Title for the next run", name="TITLE:SP")
    title_display = pvproperty(name="TITLE:DISPLAY", doc="Show title and users publicly",
                               **(NO_YES | {"record": "bo"}))
    username = text("Users of the current run", 1024, name="_USERNAME", read_only=True)
    username_sp = text("Users (comma separated)", 1024, name="_USERNAME:SP")
    rbnumber = text("Experiment (RB) number", 64, name="_RBNUMBER", read_only=True)
    rbnumber_sp = text("Experiment (RB) number for the next run", 64, name="_RBNUMBER:SP")
    instname = string("INSTNAME", "Instrument name")
    isiscycle = string("ISISCYCLE", "ISIS cycle")
    starttime = string("STARTTIME", "Run start, local time, ISISDAE's format")
    start_time = string("START_TIME", "Run start, ISO 8601 UTC")
    stop_time = string("STOP_TIME", "Run stop, ISO 8601 UTC")
    runduration = longin("RUNDURATION", "Seconds counted", "s")
    runduration_pd = longin("RUNDURATION_PD", "Seconds counted in the current period", "s")
    totalcounts = longin("TOTALCOUNTS", "Events counted", "count")
    events = longin("EVENTS", "Events counted (as TOTALCOUNTS)", "event")
    mevents = ai("MEVENTS", "Events counted, millions", "Mevent")
    totaldaecounts = ai("TOTALDAECOUNTS", "Events counted, millions", "Mcount")
    goodframes = longin("GOODFRAMES", "Good frames")
    rawframes = longin("RAWFRAMES", "Raw frames")
    goodframes_pd = longin("GOODFRAMES_PD", "Good frames of the current period")
    rawframes_pd = longin("RAWFRAMES_PD", "Raw frames of the current period")
    gooduah = ai("GOODUAH", "Proton charge in good frames", "uA hour")
    gooduah_pd = ai("GOODUAH_PD", "Proton charge in good frames of the current period",
                     "uA hour")
    totaluamps = ai("TOTALUAMPS", "Proton charge in all frames", "uA hour")
    beamcurrent = ai("BEAMCURRENT", "Proton beam current", "uA")
    countrate = pvproperty(name="COUNTRATE", value=0.0, read_only=True, precision=1,
                           record="ai", units="events/s")
    npratio = ai("NPRATIO", "Events per µAh of proton charge, millions")
    eventmodefraction = ai("EVENTMODEFRACTION", "Fraction of spectra in event mode")
    eventmodebufused = ai("EVENTMODEBUFUSED", "Event-mode buffer used")
    eventmodefilemb = ai("EVENTMODEFILEMB", "Event-mode file size", "MB")
    eventmodedatarate = ai("EVENTMODEDATARATE", "Event-mode data rate", "MB /s")
    daememoryused = longin("DAEMEMORYUSED", "DAE memory used", "byte")
    sim_mode = pvproperty(name="SIM_MODE", read_only=True, doc="The DAE is simulated",
                          **NO_YES)
    daetimingsource = string("DAETIMINGSOURCE", "Timing source")
    monitorspectrum = longin("MONITORSPECTRUM", "Monitor spectrum (DAESETTINGS)")
    monitorcounts = longin("MONITORCOUNTS", "Events of the beam monitors", "count")
    monitorfrom = ai("MONITORFROM", "Monitor integral from", "us")
    monitorto = ai("MONITORTO", "Monitor integral to", "us")

    period = longin("PERIOD", "Current period")
    period_sp = pvproperty(name="PERIOD:SP", value=1, record="longout",
                           doc="Period that frames count into (software periods)")
    numperiods = longin("NUMPERIODS", "Number of periods")
    numperiods_sp = pvproperty(name="NUMPERIODS:SP", value=1, record="longout",
                               doc="Number of software periods (SETUP only)")
    numperiods_max = longin("NUMPERIODS:MAX", "Most periods allowed")
    periodtype = string("PERIODTYPE", "Software or hardware periods")
    periodseq = longin("PERIODSEQ", "Hardware period sequences")

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
    autosave_freq = longin("AUTOSAVE:FREQ", "Autosave frequency (UPDATESETTINGS)")
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
        self._settings_lock = asyncio.Lock()
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
                await set_alarm(record, False)
            await self.errmsgs.write(self.control.error_message())
            raise
        finally:
            await self.statetrans.write("No")
            await self.refresh()
        for record in records:
            await set_alarm(record, True)

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
            await set_alarm(record, False)
        await self.errmsgs.write(message)
        raise ValueError(message)

    async def _end(self, *records) -> None:
        await self._command(self.control.end, *records)
        # as ISISDAE's end, the put completes with the run saved: once the writer has the
        # file closed (or run control gave up waiting), unless the stop itself is still to
        # be delivered (the broker is down: ERRMSGS says so and the state stays ENDING)
        deadline = time.monotonic() + self.control.end_timeout_s + 5
        while (self.control.state is RunState.ENDING and not self.control.stop_pending
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)

    @recoverrun.putter
    async def recoverrun(self, instance, value):
        if is_one(value):
            await self._refuse("RECOVERRUN refused: an aborted run's events are discarded "
                               "with its file; begin a new run", self.recoverrun)
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
        await set_alarm(self.period_sp, True)
        await self.refresh()
        return value

    @numperiods_sp.putter
    async def numperiods_sp(self, instance, value):
        await self._apply(self.numperiods_sp, "Number of periods", lambda c: replace(
            c, periods=replace(c.periods, period_type=0, soft_periods=int(value))))
        return value

    # -- settings documents --
    async def _apply(self, record, what: str, change: Callable[[DaeConfig], DaeConfig],
                     reload_tables: bool = False) -> None:
        """New settings, checked and taken in SETUP only (as ISISDAE), with STATETRANS and
        STATE:CHANGING up meanwhile; a refusal fails the put with the reason, on the :SP
        record's alarm and in ERRMSGS, and changes nothing."""
        await write_changed(((self.statetrans, "Yes"), (self.state_changing, "Yes")))
        try:
            # one settings put at a time, each changing what the last one left; taken in a
            # worker thread, as commands are: reading a large table takes seconds, and the
            # IOC's other PVs are served meanwhile
            async with self._settings_lock:
                await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                    self.control.configure, change(self.control.dae_config),
                    reload_tables=reload_tables))
        except (SettingsError, ValueError, CommandRefused) as exc:
            await write_changed(((self.statetrans, "No"), (self.state_changing, "No")))
            await self._refuse(f"{what} refused: {exc}", record)
        await write_changed(((self.statetrans, "No"), (self.state_changing, "No")))
        await set_alarm(record, True)
        log.info("%s changed", what)
        await self.show_settings()

    @daesettings_sp.putter
    async def daesettings_sp(self, instance, value):
        # the tables it names are read again, as the ICP does when settings are applied
        await self._apply(self.daesettings_sp, "DAE settings",
                          lambda c: c.with_documents({"setup": value}), reload_tables=True)
        return value

    @tcbsettings_sp.putter
    async def tcbsettings_sp(self, instance, value):
        await self._apply(self.tcbsettings_sp, "TCB settings",
                          lambda c: c.with_documents({"tcb": dehex_decompress(value)}))
        return value

    @hardwareperiods_sp.putter
    async def hardwareperiods_sp(self, instance, value):
        await self._apply(self.hardwareperiods_sp, "Hardware period settings",
                          lambda c: c.with_documents({"periods": value}))
        return value

    @updatesettings_sp.putter
    async def updatesettings_sp(self, instance, value):
        await self._apply(self.updatesettings_sp, "Update settings",
                          lambda c: c.with_documents({"updates": value}))
        return value

    @autosave_freq_sp.putter
    async def autosave_freq_sp(self, instance, value):
        if not 0 <= int(value) < 2**31:
            raise ValueError("AUTOSAVE:FREQ:SP: 0 or more")
        await self._apply(self.autosave_freq_sp, "Autosave frequency", lambda c: replace(
            c, updates=replace(c.updates, frequency=int(value))))
        return value

    async def show_settings(self) -> None:
        config = self.control.dae_config
        periods, setup = config.periods, config.setup
        await write_changed((
            (self.daesettings, setup.xml()),
            (self.tcbsettings, compress_hex(config.tcb.xml())),
            (self.hardwareperiods, periods.xml()),
            (self.updatesettings, config.updates.xml()),
            (self.autosave_freq, config.updates.frequency),
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
        empty = compress_hex_json([])
        # the tables in iocBoot/<INST>/tables/, for IBEX's choice lists, as ISISDAE lists its
        # tables directory; the settings may name others in iocBoot/<INST>/
        tables = {kind: compress_hex_json(listed(self.control.tables_dir, kind))
                  for kind in ("wiring", "spectra", "detector")}
        await write_changed((
            (self.instname, self.control.instrument),
            (self.sim_mode, "Yes" if self.parent.simulated_dae is not None else "No"),
            (self.numperiods_max, 10_000), (self.eventmodefraction, 1.0),
            (self.wiringtables, tables["wiring"]), (self.spectratables, tables["spectra"]),
            (self.detectortables, tables["detector"]), (self.periodfiles, empty),
            (self.tcbfiles, empty)))
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
        frames_pd, raw_frames_pd, uah_pd, seconds_pd = c.of_period(c.period)
        await write_changed((
            (self.totalcounts, c.total_counts), (self.events, c.total_counts),
            (self.mevents, round(c.total_counts / 1e6, 6)),
            (self.totaldaecounts, round(c.total_counts / 1e6, 6)),
            (self.goodframes, c.good_frames), (self.rawframes, c.raw_frames),
            (self.goodframes_pd, frames_pd), (self.rawframes_pd, raw_frames_pd),
            (self.countrate, c.count_rate), (self.gooduah, round(c.good_uah, 6)),
            (self.gooduah_pd, round(uah_pd, 6)), (self.totaluamps, round(c.raw_uah, 6)),
            (self.npratio, round(c.total_counts / 1e6 / c.good_uah, 6) if c.good_uah else 0.0),
            (self.beamcurrent, c.beam_current_ua), (self.monitorcounts, c.monitor_counts),
            (self.runduration_pd, int(seconds_pd)),
            (self.period, c.period), (self.numperiods, control.dae.periods)))
        await self.parent.veto.refresh(c)
        # RUNNING with most frames vetoed shows as VETOING, as ISISDAE shows it
        shown = ("VETOING" if state is RunState.RUNNING and self.parent.veto.vetoing()
                 else state.name)
        await write_changed((
            (self.runstate, shown), (self.runstate_str, shown),
            (self.runnumber, f"{control.shown_run_number:08d}"),
            (self.irunnumber, control.shown_run_number)))
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

