"""Tagline ingest service: LINE webhooks in, normalized events onto Kafka."""
