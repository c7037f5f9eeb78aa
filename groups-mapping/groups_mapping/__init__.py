"""The mapping format shared by tap-salesforce-groups and target-amplitude-groups.

One model (:mod:`groups_mapping.model`) and one validator (:mod:`groups_mapping.validate`);
neither plugin defines the format itself.
"""

from groups_mapping.files import write_atomically
from groups_mapping.model import (
    FORMAT_VERSION,
    TAP_SIGNATURE,
    GroupMapping,
    MappingConfig,
    PropertyMapping,
    is_signed,
    json_schema_path,
    signed_description,
)
from groups_mapping.urls import insecure_url
from groups_mapping.validate import (
    MAX_GROUP_TYPES,
    MAX_PROPERTIES,
    MappingError,
    deleted_flag_problems,
    deleted_flags,
    load_mapping,
    parse_mapping,
    problems_together,
    validate,
)

# Settings both plugins declare, so their config schemas describe the mapping identically.
MAPPING_FILE_DESCRIPTION = (
    "Path to the mapping JSON file (relative to the working directory). See the README for the format."
)
MAPPING_DESCRIPTION = "The mapping object inline (same format as the file); an alternative to mapping_file."

__all__ = [
    "FORMAT_VERSION",
    "MAPPING_DESCRIPTION",
    "MAPPING_FILE_DESCRIPTION",
    "MAX_GROUP_TYPES",
    "MAX_PROPERTIES",
    "TAP_SIGNATURE",
    "GroupMapping",
    "MappingConfig",
    "MappingError",
    "PropertyMapping",
    "deleted_flag_problems",
    "deleted_flags",
    "insecure_url",
    "is_signed",
    "json_schema_path",
    "load_mapping",
    "parse_mapping",
    "problems_together",
    "signed_description",
    "validate",
    "write_atomically",
]
