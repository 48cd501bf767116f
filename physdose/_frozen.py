"""A hashable, immutable mapping for static PyTree fields."""

from collections.abc import Mapping


class FrozenDict(Mapping):
    """Immutable, hashable dict (insertion-ordered), usable as a static `eqx.field`."""

    __slots__ = ("_items", "_hash")

    def __init__(self, *args, **kwargs):
        self._items = dict(*args, **kwargs)
        self._hash = None

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(tuple((k, _hashable(v)) for k, v in self._items.items()))
        return self._hash

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self):
        return f"FrozenDict({self._items!r})"


def _hashable(v):
    if isinstance(v, dict | FrozenDict):
        return FrozenDict(v)
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v
