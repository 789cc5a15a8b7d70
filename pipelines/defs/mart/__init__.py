"""The analysts' warehouse (``mart``): pseudonymous customers, the mart views as assets, and a
daily KPI asset. Everything about it lives in this folder; ``jobs`` exports what
``pipelines/definitions.py`` registers."""
