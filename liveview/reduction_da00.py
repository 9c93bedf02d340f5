"""The live reduction as da00 messages (streaming_data_types.dataarray_da00): the schema ESS's
livedata publishes its reduced data in and NICOS and livedata's dashboard read. One message
per curve, sent by the live view's publisher at its update rate when the counts changed:

- source `dspacing/<BANK>` (and `dspacing/ALL`): `signal` the counts (float64, axes
  ["dspacing"]) and `dspacing` the bin edges (Å, one more);
- source `dspacing/IMAGE`: `signal` (axes ["two_theta", "dspacing"]), `two_theta` edges
  (degrees) and `dspacing` edges;
- source `wavelength/<MONITOR>`: `signal` (axes ["wavelength"]) and `wavelength` edges.

The variable named for an axis holds its coordinate (edges: one longer than the signal's axis),
as livedata's scipp conversion builds a DataArray from them.

The topic: [liveview] reduction_topic, by default <INST>_liveData: apart from
<INST>_liveHistograms, whose readers (NICOS's just-bin-it devices) take hs00/hs01 only."""

from __future__ import annotations

import logging
import time

import numpy as np
from confluent_kafka import Producer
from streaming_data_types.dataarray_da00 import Variable, serialise_da00

from liveview.reduction import Reduced

log = logging.getLogger(__name__)

ANGSTROM = "angstrom"  # scipp's spelling, as livedata's conversion parses units


def _curve(axis: str, edges: np.ndarray, counts: np.ndarray) -> list[Variable]:
    return [Variable(name="signal", data=counts.astype(np.float64), axes=[axis],
                     unit="counts"),
            Variable(name=axis, data=np.asarray(edges, np.float64), axes=[axis],
                     unit=ANGSTROM)]


def messages(reduced: Reduced, timestamp_ns: int) -> list[tuple[str, bytes]]:
    """(source name, da00 payload) of every curve and the image."""
    out = [(f"dspacing/{bank.upper()}",
            serialise_da00(f"dspacing/{bank.upper()}", timestamp_ns,
                           _curve("dspacing", reduced.edges, counts)))
           for bank, counts in reduced.banks.items()]
    image = [Variable(name="signal", data=reduced.image.astype(np.float64),
                      axes=["two_theta", "dspacing"], unit="counts"),
             Variable(name="two_theta", data=np.asarray(reduced.two_theta_edges_deg,
                                                        np.float64),
                      axes=["two_theta"], unit="deg"),
             Variable(name="dspacing", data=reduced.edges, axes=["dspacing"], unit=ANGSTROM)]
    out.append(("dspacing/IMAGE", serialise_da00("dspacing/IMAGE", timestamp_ns, image)))
    out += [(f"wavelength/{name.upper()}",
             serialise_da00(f"wavelength/{name.upper()}", timestamp_ns,
                            _curve("wavelength", reduced.wavelength_edges, counts)))
            for name, counts in reduced.monitors.items()]
    return out


class Da00Publisher:
    """Sends the reduction when it changed; never blocks the publisher for the broker (the
    producer queues, and a failed send is logged, once a while, not raised)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self._sent_version = -1
        self.sent = 0
        self.failed = 0

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                log.warning("da00 to %s not delivered (%d so far): %s", self.topic,
                            self.failed, err)

    def publish(self, reduced: Reduced) -> int:
        """The reduction's messages if it changed since the last; returns how many sent."""
        if reduced.version == self._sent_version:
            self.producer.poll(0)
            return 0
        batch = messages(reduced, time.time_ns())
        try:
            for source, payload in batch:
                self.producer.produce(self.topic, payload, key=source.encode(),
                                      on_delivery=self._on_delivery)
        except BufferError:  # the broker is away and the queue full: the next one will do
            self.failed += 1
            return 0
        finally:
            self.producer.poll(0)
        self._sent_version = reduced.version
        self.sent += len(batch)
        return len(batch)

    def close(self) -> None:
        self.producer.flush(5)
