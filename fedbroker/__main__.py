"""``python -m fedbroker`` is the ``fedbroker`` command."""

from fedbroker.cli import main

raise SystemExit(main())
