"""The `stagectl` command line (also installed as `kubectl-stage`)."""
