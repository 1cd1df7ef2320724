"""Stand-in for starfish.core.types: the constants' real values (starfish 0.2.2 and 0.4.0,
starfish/core/types/_constants.py) and DecodedSpots (starfish/core/types/_decoded_spots.py)."""
from enum import Enum

from starfish._frame import DataFrame


class AugmentedEnum(Enum):
    def __hash__(self):
        return self.value.__hash__()

    def __eq__(self, other):
        if isinstance(other, type(self)) or isinstance(other, str):
            return self.value == other
        return False

    def __str__(self):
        return self.value


class Coordinates(AugmentedEnum):
    Z = "zc"
    Y = "yc"
    X = "xc"


class TransformType(AugmentedEnum):
    SIMILARITY = "similarity"


class Axes(AugmentedEnum):
    ROUND = "r"
    CH = "c"
    ZPLANE = "z"
    Y = "y"
    X = "x"


class Features:
    AXIS = "features"
    TARGET = "target"
    CODEWORD = "codeword"
    CODE_VALUE = "v"
    SPOT_RADIUS = "radius"
    DISTANCE = "distance"
    PASSES_THRESHOLDS = "passes_thresholds"
    CELL_ID = "cell_id"
    SPOT_ID = "spot_id"
    INTENSITY = "intensity"
    AREA = "area"
    CELLS = "cells"
    GENES = "genes"


class ValidatedTable(object):
    """starfish's ValidatedTable: a DataFrame checked for its required columns, exposed as .data."""

    required_fields = NotImplemented

    def __init__(self, table, required_fields):
        missing = set(required_fields).difference(table.columns)
        if missing:
            raise ValueError("input table with columns %s is missing %s required fields"
                             % (list(table.columns), missing))
        self._data = table

    @property
    def data(self):
        return self._data


class DecodedSpots(ValidatedTable):
    """Requires the PHYSICAL coordinates xc, yc and target, as starfish's does."""

    required_fields = {Coordinates.X.value, Coordinates.Y.value, Features.TARGET}

    def __init__(self, decoded_spots):
        ValidatedTable.__init__(self, decoded_spots, DecodedSpots.required_fields)

    def save_csv(self, output_file_name):
        self.data.to_csv(output_file_name, index=False)
