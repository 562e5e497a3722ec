"""Hardware: xnames and targets, the inventory, node health, sweeps.

Plain data and functions with no settings and no queue: workspace scripts import
them as freely as the service does (DESIGN.md, "The house").
"""
