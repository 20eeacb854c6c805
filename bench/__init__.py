"""`make bench`: one module per benchmark, a table renderer and the entry point (run.py)."""
