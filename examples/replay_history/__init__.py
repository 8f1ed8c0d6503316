"""A local Prometheus holding days of the reference app's history, to try `stagectl replay` on."""
