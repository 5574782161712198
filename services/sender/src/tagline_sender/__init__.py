"""The sender: every push to LINE, within quota and rate limits, never twice."""
