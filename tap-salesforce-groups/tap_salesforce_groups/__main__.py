"""``python -m tap_salesforce_groups``."""

from tap_salesforce_groups.tap import TapSalesforceGroups

TapSalesforceGroups.cli()
