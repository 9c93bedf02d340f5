"""The forwarder: EPICS PVs (Channel Access via caproto, PV Access via p4p) to Kafka as
f142 / f144, with al00 alarm changes and ep01 connection changes."""
