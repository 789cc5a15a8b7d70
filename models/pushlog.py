"""Placeholder: the pushlog tables are added with that source."""
