"""EPICS network settings that keep every server and client on loopback.

Two CA servers on one host can share neither a unicast search port nor (bound to 127.0.0.1) a
broadcast, so each IOC gets its own CA port and clients list both. Beacons are pinned to
loopback too: the defaults would broadcast on every interface of the machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
# CA's default 16 kB cuts off detector spectra and images; servers and libca clients must agree
MAX_ARRAY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EpicsPorts:
    run_control_ca: int = 5064
    sample_env_ca: int = 5066
    repeater: int = 5065
    pva_server: int = 5075
    pva_broadcast: int = 5076
    # the live view's own PVA server: two PVA servers on one host cannot share a search port
    liveview_pva: int = 5077
    liveview_pva_broadcast: int = 5078
    # the live view's counters over CA too (the IBEX GUI reads CA); 0: none
    liveview_ca: int = 5068

    def ca_servers(self) -> list[int]:
        return [p for p in (self.run_control_ca, self.sample_env_ca, self.liveview_ca) if p]

    def client_env(self) -> dict[str, str]:
        return {
            "EPICS_CA_ADDR_LIST": " ".join(f"{LOOPBACK}:{p}" for p in self.ca_servers()),
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_REPEATER_PORT": str(self.repeater),
            "EPICS_CA_MAX_ARRAY_BYTES": str(MAX_ARRAY_BYTES),
            # both PVA servers' search ports (pvxs takes host:port)
            "EPICS_PVA_ADDR_LIST": f"{LOOPBACK} {LOOPBACK}:{self.liveview_pva_broadcast}",
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_BROADCAST_PORT": str(self.pva_broadcast),
        }

    def server_env(self, ca_port: int) -> dict[str, str]:
        return self.client_env() | {
            "EPICS_CA_SERVER_PORT": str(ca_port),
            "EPICS_CAS_SERVER_PORT": str(ca_port),
            "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
            "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_PVAS_INTF_ADDR_LIST": LOOPBACK,
            "EPICS_PVAS_SERVER_PORT": str(self.pva_server),
            "EPICS_PVA_SERVER_PORT": str(self.pva_server),
            "EPICS_PVAS_BROADCAST_PORT": str(self.pva_broadcast),
            "EPICS_PVAS_BEACON_ADDR_LIST": LOOPBACK,
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        }

    def liveview_server_conf(self) -> dict[str, str]:
        """p4p Server settings of the live view's PVA server, on loopback."""
        return {"EPICS_PVAS_INTF_ADDR_LIST": LOOPBACK,
                "EPICS_PVAS_SERVER_PORT": str(self.liveview_pva),
                "EPICS_PVAS_BROADCAST_PORT": str(self.liveview_pva_broadcast),
                "EPICS_PVAS_BEACON_ADDR_LIST": LOOPBACK,
                "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO"}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> EpicsPorts:
        return cls(**json.loads(path.read_text()))


ADDRESS_LISTS = ("EPICS_CA_ADDR_LIST", "EPICS_PVA_ADDR_LIST")


def with_site_addresses(env: dict[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """`env` with the address lists the user already had added after the local instrument's
    own, so a forwarder started by `up` reaches the site's IOCs too."""
    out = dict(env)
    for name in ADDRESS_LISTS:
        ours = env.get(name, "").split()
        theirs = [a for a in inherited.get(name, "").split() if a not in ours]
        if theirs:
            out[name] = " ".join([*ours, *theirs])
    return out


def shell_exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}='{v}'" for k, v in env.items())
