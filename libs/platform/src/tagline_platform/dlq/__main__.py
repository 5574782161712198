"""``python -m tagline_platform.dlq``: see :mod:`tagline_platform.dlq.cli`."""

from __future__ import annotations

import sys

from tagline_platform.dlq.cli import main

sys.exit(main())
