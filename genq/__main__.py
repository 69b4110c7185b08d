"""``python -m genq``: the same as the ``genq`` command."""

from genq.entry import main

main()
