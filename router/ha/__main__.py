"""``python -m router.ha --config FILE``: the Mobile IPv4 home agent."""

import sys

from router.ha.daemon import main

sys.exit(main())
