"""Pure policy: domain detection and uplink choice (no I/O)."""
