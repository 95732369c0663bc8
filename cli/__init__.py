"""The ``ragmm`` command line (typer)."""
