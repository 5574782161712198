"""Pure ingest logic: no I/O imports here."""
