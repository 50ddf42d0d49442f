"""Model builders: loading, adapting and saving the pretrained families finetune trains."""
