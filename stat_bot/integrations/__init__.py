"""Clients for the outside world, usable by workspace scripts (they never import the service)."""
