"""``python -m nova_rl_trainer.cli``: the same as ``nova-rl-trainer``."""

import sys

from nova_rl_trainer.cli import main

sys.exit(main())
