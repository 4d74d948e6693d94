"""Run the CLI as ``python -m provisioning.cli``."""

import sys

from provisioning.cli import main

sys.exit(main())
