"""Running the pair at scale: shards derived from the mapping (shards.py) and a Dagster code location (dagster/)."""
