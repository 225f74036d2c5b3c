"""The ``git flor`` command line (typer + rich); the library never imports it."""
