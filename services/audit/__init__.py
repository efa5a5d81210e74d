"""audit: the tamper-evident trail of every caretrail fact."""
