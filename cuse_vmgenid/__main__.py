# SPDX-License-Identifier: MIT
import sys

from .service.cli import main

sys.exit(main())
