"""Shipping a trained model: merge adapters into one folder, export to stock transformers LLaVA, write the model
card, publish to the Hub, and import XTuner's folders. Each concept is one module; nothing is imported here, so
`llava-hf` subcommands load only what they use."""
