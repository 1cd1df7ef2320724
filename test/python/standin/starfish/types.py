"""Stand-in for starfish.types (the public constants module)."""
from starfish.core.types import Axes, Coordinates, Features  # noqa: F401
