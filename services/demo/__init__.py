"""The remanufacturing demo: simulated equipment over Kafka and operators over HTTP."""
