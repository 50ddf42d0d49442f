"""finetune: fine-tune pretrained speech Transformers from one YAML config, and serve the result."""

__version__ = "0.1.0"
