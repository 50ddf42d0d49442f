"""Model builders. Importing the package filters one transformers notice about Whisper's own generate
arguments (:mod:`finetune.models.generate_notices`)."""

from finetune.models import generate_notices

generate_notices.install()
