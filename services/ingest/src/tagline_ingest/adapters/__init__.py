"""I/O adapters of ingest."""
