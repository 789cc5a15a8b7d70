"""Placeholder: the trtc tables are added with that source."""
