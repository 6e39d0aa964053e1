"""Runtime: how processes start and stop (python -m steps, the warm process, signals, locks, server checks)."""
