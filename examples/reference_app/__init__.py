"""A stand-in for the runbook's API server, and traffic to drive it.

The controller's gates are Prometheus queries over series that the API server
exports. This package provides a small app that exports those series with the
runbook's semantics (`server`), the pure request decisions behind it
(`validation`), and a load generator (`load`), so that rules, signals and the
controller can be tested against real scraped data on one machine.

The modules are imported by name (``examples.reference_app.server``); the package
itself imports nothing so that ``python -m`` can run either module cleanly.
"""
