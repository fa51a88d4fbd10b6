"""review digest: a static site generator for curated biomedical literature."""

__version__ = "0.1.0"
