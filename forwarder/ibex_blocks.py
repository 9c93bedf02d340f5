"""IBEX blocks: the block server publishes the block names of the current configuration as
<prefix>CS:BLOCKSERVER:BLOCKNAMES, a char waveform holding the hex of zlib-compressed JSON
(a list of names). Each block is served as <prefix>CS:SB:<name>."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable

import numpy as np

from datastream.schemas import MalformedMessage
from datastream.streams import Stream

log = logging.getLogger(__name__)

BLOCKNAMES_PV = "CS:BLOCKSERVER:BLOCKNAMES"
BLOCK_PV = "CS:SB:"


def encode_block_names(names: list[str]) -> str:
    """What the block server writes (tests and simulated instruments use it)."""
    return zlib.compress(json.dumps(names).encode()).hex()


def decode_block_names(raw: object) -> list[str]:
    """BLOCKNAMES value (char array, bytes or str) -> block names."""
    if isinstance(raw, str):
        text = raw
    else:
        data = bytes(np.asarray(raw, dtype=np.uint8)) if not isinstance(raw, bytes) else raw
        text = data.split(b"\0", 1)[0].decode("ascii", "replace")
    text = text.strip()
    if not text:
        return []
    try:
        names = json.loads(zlib.decompress(bytes.fromhex(text)))
    except (ValueError, zlib.error) as exc:
        raise MalformedMessage(f"BLOCKNAMES is not hex of zlib-compressed JSON: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise MalformedMessage("BLOCKNAMES JSON is not a list of block names")
    return names


def block_streams(prefix: str, names: list[str], topic: str) -> dict[Stream, bool]:
    return {Stream(f"{prefix}{BLOCK_PV}{name}", "ca", "f142", topic): True for name in names}


class BlocksWatcher:
    """Monitors BLOCKNAMES over CA (start()/close()) and hands each new list to on_blocks.
    A disconnected block server keeps the blocks forwarded: a restart of it is no new config.
    """

    def __init__(self, prefix: str, on_blocks: Callable[[list[str]], None]) -> None:
        self.pv_name = prefix + BLOCKNAMES_PV
        self._on_blocks = on_blocks
        self._context = None
        self._subscription = None
        self.errors = 0

    def start(self) -> None:
        from caproto.threading.client import Context

        self._context = Context()
        (pv,) = self._context.get_pvs(self.pv_name)
        self._subscription = pv.subscribe(data_type="native")
        self._subscription.add_callback(self._callback)

    def _callback(self, _sub: object, response: object) -> None:
        try:
            names = decode_block_names(response.data)
        except MalformedMessage as exc:
            self.errors += 1
            log.warning("%s: ignored: %s", self.pv_name, exc)
            return
        log.info("IBEX blocks: %s", ", ".join(names) or "(none)")
        try:
            self._on_blocks(names)
        except Exception:
            log.exception("IBEX blocks %s could not be applied", names)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.clear()
        if self._context is not None:
            self._context.disconnect()
