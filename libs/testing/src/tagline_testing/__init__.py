"""Tagline testing library."""
