"""``python -m finetune`` (and so ``accelerate launch -m finetune ...``)."""

import sys

from finetune.cli import main

sys.exit(main())
