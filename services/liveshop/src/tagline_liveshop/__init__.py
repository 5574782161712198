"""Tagline liveshop: live-stream "+1" comments into orders, stock, waitlist, order lifecycle, LINE POINTS."""
