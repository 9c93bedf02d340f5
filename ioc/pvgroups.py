"""The caproto PVs of the run-control IOC: ISISDAE run control under <prefix>DAE:
(ioc.dae_pvs), experiment details under <prefix>ED: (ioc.experiment_pvs), the file writer's
status and standalone write jobs under <prefix>FILEWRITER:, the forwarder's status under
<prefix>FORWARDER:."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from ioc.dae import Dae
from ioc.dae_pvs import DaePVs
from ioc.experiment_pvs import ExperimentPVs
from ioc.forwarder_status import ForwarderState, ForwarderStatus
from ioc.pv_records import BO, is_one, string, text, write_changed
from ioc.run_control import RunControl
from ioc.standalone_job import JobRefused, StandaloneJob
from ioc.veto_pvs import VetoPVs
from ioc.writer_status import WriterState, WriterStatus

log = logging.getLogger(__name__)

async def write_age(prop, age_s: float) -> None:
    """A heartbeat age, updated in half-second steps (and when it appears or goes)."""
    age = round(age_s, 1)
    if abs(age - prop.value) >= 0.5 or (age < 0) != (prop.value < 0):
        await prop.write(age)


class FileWriterPVs(PVGroup):
    """The file writer as the IOC sees it through its x5f2/answ/wrdn messages."""

    state = pvproperty(name="STATE", value=WriterState.UNAVAILABLE.name, dtype=ChannelType.ENUM,
                       enum_strings=tuple(s.name for s in WriterState), record="mbbi",
                       read_only=True)
    filename = text("File being written", name="FILENAME", read_only=True)
    jobid = string("JOBID", "Job id of the file being written")
    message = text("Last message from the file writer", length=1024, name="MESSAGE",
                    read_only=True)
    lastfile = text("Last file finished", name="LASTFILE", read_only=True)
    heartbeat_age = pvproperty(name="HEARTBEAT_AGE", value=-1.0, read_only=True, precision=1,
                               units="s", doc="Seconds since the writer's last status (-1: never)")
    # a write job without a DAE run: set the file name and structure file, then START / STOP
    job_filename_sp = text("File name of a standalone write job", name="JOB:FILENAME_SP")
    job_structure_sp = text("Path of its nexus_structure JSON file", length=1024,
                             name="JOB:STRUCTURE_SP")
    job_start = pvproperty(name="JOB:START", doc="Start the standalone write job", **BO)
    job_stop = pvproperty(name="JOB:STOP", doc="Stop the standalone write job", **BO)
    job_id = string("JOB:ID", "Job id of the standalone job being written (empty: none)")
    job_errmsg = text("Why the last standalone job command was refused", length=1024,
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
        if is_one(value):
            await self._job_command(functools.partial(
                self.standalone.start, self.job_filename_sp.value, self.job_structure_sp.value))
        return "0"

    @job_stop.putter
    async def job_stop(self, instance, value):
        if is_one(value):
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
    veto = SubGroup(VetoPVs, prefix="DAE:")  # ISISDAE's veto records, beside the others
    ed = SubGroup(ExperimentPVs, prefix="ED:")
    filewriter = SubGroup(FileWriterPVs, prefix="FILEWRITER:")
    forwarder = SubGroup(ForwarderPVs, prefix="FORWARDER:")

    def __init__(self, *args, control: RunControl, writer_status: WriterStatus,
                 forwarder_status: ForwarderStatus, standalone_job: StandaloneJob,
                 simulated_dae: Dae | None = None, **kwargs) -> None:
        self.control = control
        self.writer_status = writer_status
        self.standalone_job = standalone_job
        self.forwarder_status = forwarder_status
        self.simulated_dae = simulated_dae
        # called after each 0.1 s scan: proof for /healthz that the CA server's loop runs
        self.on_scan: Callable[[], None] = lambda: None
        super().__init__(*args, **kwargs)
