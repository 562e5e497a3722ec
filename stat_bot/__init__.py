"""STAT bot: a ChatOps job queue for HPC system triage."""

__version__ = "0.1.0"
