"""LDFSAM models package."""
