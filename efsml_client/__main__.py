"""``python -m efsml_client <command>``."""

import sys

from efsml_client.cli import main

sys.exit(main())
