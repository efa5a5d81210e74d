"""caretrail's benchmark suite: `caretrail bench` (see bench/README.md)."""
