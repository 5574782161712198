"""The sender's pure logic: pricing, quota rules, rate windows, planning and the delivery state machine."""
