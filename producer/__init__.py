"""HTTP ingestion service: JSON records in, shard-aware KPL aggregates out to Kinesis."""
