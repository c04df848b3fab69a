"""A load generator for the ingest endpoint: ``python -m loadgen --help``."""
