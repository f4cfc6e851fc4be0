"""A readers-writer lock: many concurrent searches, or one writer (add, remove, reset).

faiss allows concurrent searches but not a search concurrent with an add (the add may reallocate
the storage the search reads). ``InvGCIndex`` takes the read side in ``search``/``range_search``
and the write side only for the short commit of ``add``/``remove_ids``/``reset``/``train``;
the correction itself runs outside the lock, so searches continue while a batch is corrected.
Writers are not starved: once a writer waits, new readers wait behind it.
"""
import threading
from contextlib import contextmanager


class ReadWriteLock:
    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self):
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
