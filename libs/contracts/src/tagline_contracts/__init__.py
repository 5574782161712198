"""Tagline's message contracts: topic names, the envelope and every Kafka message as a pydantic model."""
