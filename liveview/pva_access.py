"""EPICS access security for the live view's PVA setpoints (time channels, image range, the
reduction's binning): the site's ACF, the one the run-control IOC takes ([run_control]
access_security, datastream.access_config), decides who may put; everyone else reads. A put
is refused before anything is checked or applied, and every accepted or refused put is
logged as caPutLog logs the IOC's (host, user, PV, value)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from typing import Any

from datastream.access_config import Access, AccessConfig, default_config, log_field

put_log = logging.getLogger("liveview.putlog")


def _peer_host(peer: str) -> str:
    """The host of p4p's peer ("127.0.0.1:5077", "[::1]:5077"): its address."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]")


@functools.lru_cache(maxsize=1024)
def _names_of(address: str) -> tuple[str, ...]:
    """An address and the host names it has: ACF HAGs name hosts. Asked once per address
    (a reverse lookup may take a while; a put waits for it the first time only)."""
    names = [address]
    try:
        ipaddress.ip_address(address)
        name, aliases, _ = socket.gethostbyaddr(address)
        names += [name, *aliases]
    except (OSError, ValueError):
        pass
    return tuple(names)


class PvaAccess:
    def __init__(self, config: AccessConfig | None = None) -> None:
        self.config = config or default_config()
        self.group = self.config.group_for_writable()

    def may_put(self, op: Any) -> bool:
        """The client of a p4p ServerOperation may write: its account and any name of its
        host get WRITE from the ACF."""
        user = op.account() or None
        return any(self.config.access(self.group, user, host) >= Access.WRITE
                   for host in _names_of(_peer_host(op.peer() or "")))

    def check(self, op: Any, value: object) -> bool:
        """Log the put; False (and the put refused) unless the client may write."""
        who = f"{log_field(_peer_host(op.peer() or ''))} {log_field(op.account())}"
        if not self.may_put(op):
            put_log.warning("%s %s denied: no write access", who, op.name())
            op.done(error=f"{op.account()!r} may not write {op.name()}")
            return False
        put_log.info("%s %s new=%r", who, op.name(), value)
        return True


# the live view's policy: set once at start-up (service.run), read by every setpoint
ACCESS = PvaAccess()


def set_access(config: AccessConfig | None) -> None:
    global ACCESS
    ACCESS = PvaAccess(config)
