"""Singer tap for the Salesforce fields named in a groups mapping (see tap.py)."""
