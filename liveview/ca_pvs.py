"""The live view's scalar counters over Channel Access too, for the IBEX GUI, genie and
caget, which speak CA: the same names and values as the PVA counters (liveview.pvs), served
by a caproto server in a thread of its own, on its own CA port on loopback (two CA servers on
one host cannot share a search port; clients list it, as `datastream env` does). The same
server serves the ISIS DAE's spectrum PVs (liveview.dae_ca) when given their pvdb."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from caproto.asyncio.server import Context

from datastream.ca_beacons import quiet_beacon_refusals
from datastream.epics_network import LOOPBACK
from liveview.ca_access import ReadOnlyDouble, ReadOnlyInteger, ReadOnlyString

log = logging.getLogger(__name__)

# read-only to clients: these are the live view's counts (liveview.ca_access)
_CHANNELS = {"l": ReadOnlyInteger, "d": ReadOnlyDouble, "s": ReadOnlyString}
# a DBR_STRING holds 40 bytes, its terminating NUL included
_STRING_BYTES = 39


class CaCounters:
    """Owns one thread and its event loop (start()/close()); post() from any thread."""

    def __init__(self, prefix: str, counters: dict[str, tuple[str, str]], port: int,
                 pvdb: dict[str, Any] | None = None) -> None:
        """`pvdb`: more names to serve (it becomes the server's pvdb, with the counters added,
        so a dict subclass making names on demand keeps doing so)."""
        self.port = port
        self._channels = {}
        for name, (code, unit) in counters.items():
            kind = _CHANNELS[code]
            extra = {} if code == "s" else {"units": unit}
            self._channels[name] = kind(value="" if code == "s" else 0, **extra)
        self.pvdb = pvdb if pvdb is not None else {}
        self.pvdb.update({prefix + name: channel for name, channel in self._channels.items()})
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name="live-ca", daemon=True)
        self._started = threading.Event()
        self._error: Exception | None = None

    def start(self) -> None:
        # caproto reads its ports and beacon addresses from the environment when a server
        # context is made: this process serves CA only here
        os.environ.update({"EPICS_CA_SERVER_PORT": str(self.port),
                           "EPICS_CAS_SERVER_PORT": str(self.port),
                           "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
                           "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO"})
        quiet_beacon_refusals()
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"the live view's CA server did not start on port "
                               f"{self.port}: {self._error or 'no answer in 10 s'}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            # caproto's queues belong to the loop they are made in: make it in this one
            context = Context(self.pvdb, interfaces=[LOOPBACK])
            self._started.set()
            try:
                await context.run(log_pv_names=False)
            finally:
                # caproto leaves its clients' connections open when cancelled: a client
                # (libca) would keep its dead circuit to this port and never reach a server
                # started on the port again
                for circuit in list(context.circuits):
                    circuit.client.close()

        self._task = self._loop.create_task(serve())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a port taken, an interface gone: said, not silent
            self._error = exc
            log.exception("the live view's CA server stopped")
        finally:
            self._started.set()
            # the server's own tasks (circuits, subscriptions) end with it
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def post(self, values: dict[str, object]) -> None:
        """New values (changed ones only, as the caller sends them)."""
        if self._task is None or self._task.done():
            return
        for name, value in values.items():
            channel = self._channels.get(name)
            if channel is not None:
                if isinstance(value, str):  # a run name too long or not latin-1 is cut, not lost
                    value = value.encode("latin-1", "replace")[:_STRING_BYTES].decode("latin-1")
                asyncio.run_coroutine_threadsafe(channel.write(value), self._loop)

    def submit(self, coro: Coroutine[Any, Any, None]) -> Future[None] | None:
        """Run a coroutine on the server's loop (from any thread); None if it is not serving."""
        if self._task is None or self._task.done():
            coro.close()
            return None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)
