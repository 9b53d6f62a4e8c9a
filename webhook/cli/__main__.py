"""``python -m webhook.cli``: the ``trustgate`` command."""

import sys

from webhook.cli.main import main

sys.exit(main())
