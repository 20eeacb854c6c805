"""Request-time code shared by every Lambda handler in app.py.

Nothing here is imported at build time, and nothing here imports the
heavy ML libraries at module level: cold start pays only for what a
request uses.
"""
