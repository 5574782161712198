"""Tagline platform library."""
