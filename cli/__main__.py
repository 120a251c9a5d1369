"""`python -m cli ...`: the whole `motionnft` command (the library's commands and those of the rooms above)."""

from __future__ import annotations

from cli.main import app

if __name__ == "__main__":
    app()
