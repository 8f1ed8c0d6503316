"""The Prometheus adapter: signals, alerts and modes read at any evaluation time."""
