"""Monitoring: data drift of new inputs against a run's training data (`hydranet monitor`)."""
