"""The Dagster code location of the project (definitions.py)."""
