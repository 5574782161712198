"""Tagline tagger: members, keyword and behavior tags, segments, tag coverage and RFM."""
