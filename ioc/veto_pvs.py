"""ISISDAE's veto PVs under <prefix>DAE: (isisdae.db and veto.template): VETOSTATUS,
VETOPC (% of frames vetoed since the last update; RUNSTATE shows VETOING above 50 %, as
ISISDAE's does), VETO:EXT0..3:FRAMES/PC/ALIAS, and VETO:ENABLE:SP / VETO:DISABLE:SP, which
switch a veto by its ICP name at any time (genie_python switches FIFO so). The other vetoes
are switched in DAESETTINGS (genie's change_vetos)."""

from __future__ import annotations

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from ioc.dae import DaeCounters
from ioc.pv_records import ai, longin, set_alarm, string, text, write_changed

# the ICP's names for setVeto -> the veto (ioc.beam_model.VETO_BITS)
ICP_VETOES = {"FIFO": "fifo", "SMP": "smp", "TS2": "ts2_pulse", "HZ50": "isis_slow",
              "EXT0": "ext0", "EXT1": "ext1", "EXT2": "ext2", "EXT3": "ext3",
              "FC": "fermi0", "FERMI": "fermi0"}
# VETOSTATUS's lines: (label, veto) in ISISDAE's order
_STATUS = (("FIFO", "fifo"), ("SMP", "smp"), ("TS2", "ts2_pulse"), ("ISIS 50Hz", "isis_slow"),
           ("External 0", "ext0"), ("External 1", "ext1"), ("External 2", "ext2"),
           ("External 3", "ext3"), ("Fermi chopper", "fermi0"), ("Pause (software)", "pause"),
           ("Dwell period", "dwell"))


def _switch(on: bool):
    async def putter(group: VetoPVs, instance, value):
        name = str(value).strip().upper()
        veto = ICP_VETOES.get(name)
        record = group.enable_sp if on else group.disable_sp
        if veto is None:
            message = (f"VETO:{'ENABLE' if on else 'DISABLE'}:SP refused: no veto named "
                       f"{str(value)[:40]!r}; one of {', '.join(ICP_VETOES)}")
            await group.parent.dae._refuse(message, record)
        group.parent.control.set_veto(veto, on)
        await set_alarm(record, True)
        await group.refresh()
        return value
    return putter


def _pc(vetoed: int, raw: int) -> float:
    return round(100.0 * vetoed / raw, 2) if raw else 0.0


class VetoPVs(PVGroup):
    vetostatus = text("Vetoes: on or off, frames each vetoed this run", 3000,
                      name="VETOSTATUS", read_only=True)
    vetopc = ai("VETOPC", "Frames vetoed since the last update", "%")
    enable_sp = pvproperty(name="VETO:ENABLE:SP", value="", dtype=ChannelType.STRING,
                           record="stringout", doc="Switch a veto on, by name (FIFO, SMP, …)"
                           ).putter(_switch(True))
    disable_sp = pvproperty(name="VETO:DISABLE:SP", value="", dtype=ChannelType.STRING,
                            record="stringout", doc="Switch a veto off, by name"
                            ).putter(_switch(False))
    ext0_frames = longin("VETO:EXT0:FRAMES", "Frames vetoed by external veto 0", "frame")
    ext1_frames = longin("VETO:EXT1:FRAMES", "Frames vetoed by external veto 1", "frame")
    ext2_frames = longin("VETO:EXT2:FRAMES", "Frames vetoed by external veto 2", "frame")
    ext3_frames = longin("VETO:EXT3:FRAMES", "Frames vetoed by external veto 3", "frame")
    ext0_pc = ai("VETO:EXT0:PC", "Frames vetoed by external veto 0 since the last update", "%")
    ext1_pc = ai("VETO:EXT1:PC", "Frames vetoed by external veto 1 since the last update", "%")
    ext2_pc = ai("VETO:EXT2:PC", "Frames vetoed by external veto 2 since the last update", "%")
    ext3_pc = ai("VETO:EXT3:PC", "Frames vetoed by external veto 3 since the last update", "%")
    ext0_alias = string("VETO:EXT0:ALIAS", "Name of external veto 0 (DAESETTINGS)")
    ext1_alias = string("VETO:EXT1:ALIAS", "Name of external veto 1 (DAESETTINGS)")
    ext2_alias = string("VETO:EXT2:ALIAS", "Name of external veto 2 (DAESETTINGS)")
    ext3_alias = string("VETO:EXT3:ALIAS", "Name of external veto 3 (DAESETTINGS)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last: tuple[int, int, dict[str, int]] = (0, 0, {})  # good, raw, vetoed
        self._vetoed_running_pc = 0.0

    def vetoing(self) -> bool:
        """More than half the frames since the last update vetoed, other than by the pause:
        ISISDAE's VETOING. Frames made while paused carry the software veto; just after a
        resume the last update's frames are still mostly those, and the run is running."""
        return self._vetoed_running_pc > 50.0

    async def refresh(self, c: DaeCounters | None = None) -> None:
        control = self.parent.control
        c = c or control.dae.counters()
        vetoed = dict(c.vetoed_frames)
        good0, raw0, vetoed0 = self._last
        if c.raw_frames < raw0:  # a new run
            good0, raw0, vetoed0 = 0, 0, {}
        d_raw = c.raw_frames - raw0
        if d_raw:  # no frames since: the figures stand
            self._last = (c.good_frames, c.raw_frames, vetoed)
            pcs = {f"ext{i}": _pc(vetoed.get(f"ext{i}", 0) - vetoed0.get(f"ext{i}", 0), d_raw)
                   for i in range(4)}
            d_vetoed = d_raw - (c.good_frames - good0)
            d_paused = vetoed.get("pause", 0) - vetoed0.get("pause", 0)
            self._vetoed_running_pc = _pc(max(d_vetoed - d_paused, 0), d_raw)
            await write_changed(
                ((self.vetopc, _pc(d_vetoed, d_raw)),
                 *((getattr(self, f"{v}_pc"), pc) for v, pc in pcs.items())))
        enabled = control.enabled_vetoes() | {"pause", "dwell"}
        status = "\n".join(f"{label} veto: {'ENABLED' if veto in enabled else 'disabled'}, "
                           f"{vetoed.get(veto, 0)} frames vetoed" for label, veto in _STATUS)
        names = control.dae_config.setup.veto_names
        await write_changed((
            (self.vetostatus, status),
            *((getattr(self, f"ext{i}_frames"), vetoed.get(f"ext{i}", 0)) for i in range(4)),
            *((getattr(self, f"ext{i}_alias"), names[i][:39]) for i in range(4))))
