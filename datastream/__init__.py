"""Shared code of the datastreaming system: Kafka client set-up, topic names, schema codecs,
the embedded broker and the command line."""

__version__ = "0.1.0"
