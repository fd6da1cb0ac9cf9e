"""Migrations of the extplug plugin."""
