"""A minimal column-oriented DataFrame (pandas is not installed on the development machine):
the few methods starfish's result classes and process-fov use (columns, df[col], len, drop,
to_csv)."""
import csv


class DataFrame(object):
    def __init__(self, columns=None):
        self._cols = {str(k): list(v) for k, v in (columns or {}).items()}
        lengths = set(len(v) for v in self._cols.values())
        if len(lengths) > 1:
            raise ValueError("arrays must all be same length")

    @property
    def columns(self):
        return list(self._cols)

    @property
    def shape(self):
        return (len(self), len(self._cols))

    def __getitem__(self, name):
        return self._cols[name]

    def __len__(self):
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def drop(self, labels, axis=1):
        assert axis == 1, "stand-in: only columns can be dropped"
        labels = [labels] if isinstance(labels, str) else [str(x) for x in labels]
        missing = [x for x in labels if x not in self._cols]
        if missing:
            raise KeyError("%s not found in axis" % missing)
        return DataFrame({k: v for k, v in self._cols.items() if k not in labels})

    def to_csv(self, path, index=False):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.columns)
            w.writerows(zip(*self._cols.values()))
