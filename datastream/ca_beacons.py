"""caproto's CA servers send a beacon every few seconds to the CA repeater's port and log each
refused one as an ERROR with a traceback. With no repeater on the host (there is none unless
a client started one) that is every beacon, forever: noise an operator learns to ignore, and
then misses a real error in. Said once as a warning here, then left out."""

from __future__ import annotations

import logging


class BeaconRefusals(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to send beacon"):
            return True
        if self._said:
            return False
        self._said = True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = ("CA beacons are refused (no CA repeater listens on this host); clients "
                      "still find this server by its search port. Said once.")
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


def quiet_beacon_refusals() -> None:
    logging.getLogger("caproto.ctx").addFilter(BeaconRefusals())
