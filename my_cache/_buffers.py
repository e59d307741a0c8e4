"""Pickle protocol 5's out-of-band buffers, collected: the one buffer_callback of the keys'
pickler (which hashes large buffers apart) and of stored results (which write them apart)."""

from __future__ import annotations

import pickle


class OutOfBand:
    """A pickler's ``buffer_callback``: contiguous buffers of ``threshold`` bytes or more are
    kept out of band, as byte views of the pickled object's own memory (never copied); the
    others stay in the pickle."""

    __slots__ = ("_threshold", "buffers")

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self.buffers: list[memoryview] = []
        """The buffers kept out of band, in the order the pickle refers to them."""

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if view.nbytes < self._threshold:
            return True
        self.buffers.append(view)
        return False

    def taken(self) -> list[memoryview]:
        """The buffers kept so far, leaving none: for a pickler that is used again."""
        buffers, self.buffers = self.buffers, []
        return buffers
