"""Allow `python -m generator ...` as a synonym for the `digest` command."""

from generator.cli import run

run()
