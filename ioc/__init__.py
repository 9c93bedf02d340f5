"""The run-control soft IOC (caproto): ISISDAE run-control PVs, the simulated DAE, and the
file-writer / forwarder status PVs."""
