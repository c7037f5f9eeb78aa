"""Singer target writing Amplitude group properties (see target.py)."""
