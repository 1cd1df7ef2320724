"""Stand-in for starfish.core (see test/python/standin/starfish/__init__.py)."""
