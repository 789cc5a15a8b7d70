"""The analysts' warehouse (``mart``): pseudonymous customers, the mart views and the KPI tables
kept by reporting day as assets (their SQL in ``sql/mart/``), and a daily KPI asset. Everything about it lives in this folder; ``jobs`` exports what
``pipelines/definitions.py`` registers."""
