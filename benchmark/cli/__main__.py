"""``python -m sslbench.cli``: the ``bench`` command."""
from sslbench.cli import main

main()
