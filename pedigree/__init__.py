"""pedigree: a provenance index for model weights."""

__version__ = "0.1.0"
