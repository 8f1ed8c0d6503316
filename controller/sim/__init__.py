"""The virtual-clock world: scenarios, scripted metrics and targets, `simulate` and `replay`."""
