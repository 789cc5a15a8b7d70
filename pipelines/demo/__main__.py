"""``python -m pipelines.demo``: see ``pipelines/demo/run.py``."""

from pipelines.demo.run import main

main()
