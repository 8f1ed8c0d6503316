"""The runtime of the stage rollout controller: adapters, drivers and the CLI.

Drivers (`simulate`, `replay`, the operator) only choose adapters and a clock;
every decision is made by `phases.decide`.
"""
