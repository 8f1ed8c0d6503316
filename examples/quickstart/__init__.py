"""A local quickstart: the operator, the API-server emulator, the reference app and Prometheus."""
