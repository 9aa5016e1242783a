"""Usage: recording (exactly once), rollups, attribution and totals."""
