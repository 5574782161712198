"""Pure tagger logic: no I/O imports."""
