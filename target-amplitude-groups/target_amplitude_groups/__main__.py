"""``python -m target_amplitude_groups``."""

from target_amplitude_groups.target import TargetAmplitudeGroups

TargetAmplitudeGroups.cli()
