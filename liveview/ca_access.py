"""Channel Access channels that clients may read and never write. The live view's counters
and the DAE's spectra are its own results: a `caput IN:DEMO:LIVE:EVENTS 0` that stuck would
show IBEX a forged count. caproto asks a channel's `check_access` when a client connects and
again on each write (`auth_write`), so READ here refuses every client's put, whoever it is,
while the server's own `channel.write()` (no client) goes on updating the value."""

from __future__ import annotations

from typing import Any

from caproto import (
    AccessRights,
    ChannelDouble,
    ChannelFloat,
    ChannelInteger,
    ChannelString,
)


class ReadOnly:
    """Mixin, first among the bases: read access only, for every client."""

    def check_access(self, hostname: str, username: str) -> Any:
        return AccessRights.READ


class ReadOnlyInteger(ReadOnly, ChannelInteger):
    pass


class ReadOnlyDouble(ReadOnly, ChannelDouble):
    pass


class ReadOnlyFloat(ReadOnly, ChannelFloat):
    pass


class ReadOnlyString(ReadOnly, ChannelString):
    pass
