# SPDX-License-Identifier: MIT
import sys

from .tool import main

sys.exit(main())
