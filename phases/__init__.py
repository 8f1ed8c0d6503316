"""The decision core of the stage rollout controller.

Everything here is pure: plans, the phase state machine, verdict rules and
`decide`. Nothing in this package reads the clock, the network or the cluster;
the drivers in `controller` bring observations and the current time.
"""
