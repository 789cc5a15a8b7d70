"""Placeholder: the isales tables are added with that source."""
