"""Experiment details under <prefix>ED:, as IBEX's INSTETC IOC and DatabaseServer serve them:
the RB number and the users that genie_python's change_rb/change_users set and get_rb,
get_users and ibex_bluesky_core's run engine read. They are the DAE's next-run settings
(DAE:_RBNUMBER:SP, DAE:_USERNAME:SP), written into each run's pl72 and file.

- ED:USERNAME:SP takes IBEX's form: a JSON list of {"name": ...}, zlib-compressed and
  hex-encoded; ED:USERNAME and ED:SURNAME show it back in the same encoding, and
  ED:USERNAME:DAE:SP the comma-separated names the DAE gets.
- ED:RBNUMBER:SP takes the digits of an RB number."""

from __future__ import annotations

import json

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from ioc.labview_xml import SettingsError, compress_hex_json, dehex_decompress
from ioc.pv_records import text

MAX_USERS = 200
MAX_NAME = 256


def _clean(value: str, what: str, limit: int) -> str:
    value = value.strip()
    if any(ord(c) < 32 or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
           for c in value):
        raise ValueError(f"{what}: control or bidirectional characters are not allowed")
    if len(value) > limit:
        raise ValueError(f"{what}: over {limit} characters")
    return value


def users_from_table(value: str) -> list[str]:
    """The names of IBEX's users table (hex zlib JSON [{"name": ...}, ...])."""
    try:
        table = json.loads(dehex_decompress(value)) if value.strip().strip("\0") else []
    except (SettingsError, ValueError) as exc:
        raise ValueError(f"ED:USERNAME:SP: not a hex-encoded, zlib-compressed JSON list of "
                         f"users ({exc})") from None
    if not isinstance(table, list) or len(table) > MAX_USERS:
        raise ValueError(f"ED:USERNAME:SP: a JSON list of at most {MAX_USERS} users")
    names = []
    for user in table:
        name = user.get("name") if isinstance(user, dict) else None
        if not isinstance(name, str):
            raise ValueError('ED:USERNAME:SP: each user is {"name": "..."}')
        name = _clean(name.replace(",", " "), "a user's name", MAX_NAME)
        if name:
            names.append(name)
    return names


class ExperimentPVs(PVGroup):
    rbnumber = pvproperty(name="RBNUMBER", value="", dtype=ChannelType.STRING, read_only=True,
                          record="stringin", doc="Experiment (RB) number")
    rbnumber_sp = text("Experiment (RB) number to set (digits)", 16000, name="RBNUMBER:SP")
    rbnumber_dae_sp = pvproperty(name="RBNUMBER:DAE:SP", value="", dtype=ChannelType.STRING,
                                 record="stringout", doc="RB number for the DAE")
    username = text("Users (hex zlib JSON list of name, institute, role)", 4096,
                    name="USERNAME", read_only=True)
    username_sp = text("Users to set (hex zlib JSON list of {name})", 16000,
                       name="USERNAME:SP")
    username_dae_sp = text("Users for the DAE, comma separated", 1024,
                           name="USERNAME:DAE:SP")
    surname = text("Surnames (hex zlib JSON list)", 4096, name="SURNAME", read_only=True)

    @property
    def dae(self):
        return self.parent.dae

    async def _rb(self, value: str) -> None:
        rb = _clean(value.rstrip("\0"), "RB number", 63)
        if rb and not rb.isdigit():
            raise ValueError(f"RB number {rb!r}: digits only")
        await self.dae.set_rb_number(rb)

    @rbnumber_sp.putter
    async def rbnumber_sp(self, instance, value):
        await self._rb(value)
        return value

    @rbnumber_dae_sp.putter
    async def rbnumber_dae_sp(self, instance, value):
        await self._rb(value)
        return value

    async def show_rb(self, rb: str) -> None:
        if self.rbnumber.value != rb:
            await self.rbnumber.write(rb[:39])

    @username_sp.putter
    async def username_sp(self, instance, value):
        names = users_from_table(value)
        await self._set_users(names)
        return value

    @username_dae_sp.putter
    async def username_dae_sp(self, instance, value):
        names = [_clean(n, "a user's name", MAX_NAME) for n in value.split(",")]
        await self._set_users([n for n in names if n], write_dae_sp=False)
        return value

    async def _set_users(self, names: list[str], write_dae_sp: bool = True) -> None:
        joined = ",".join(names)
        if len(joined) >= 1024:
            raise ValueError("users: over 1024 characters in all")
        await self.username.write(compress_hex_json([{"name": n, "institute": "", "role": ""}
                                            for n in names]))
        await self.surname.write(compress_hex_json([n.split()[-1] for n in names]))
        if write_dae_sp:
            await self.username_dae_sp.write(joined, verify_value=False)
        await self.dae.set_users(", ".join(names))
