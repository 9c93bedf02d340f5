"""The embedded single-node Apache Kafka broker (KRaft), fetched from Maven Central."""
