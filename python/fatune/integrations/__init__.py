"""fatune inside other libraries: `fatune.integrations.transformers.register()` (Hugging Face)."""
