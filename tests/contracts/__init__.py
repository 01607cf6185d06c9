"""Contract suites, one per extension kind, run over every registered name."""
