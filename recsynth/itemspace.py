"""The modelled item columns: the catalog's head as itself, its long tail as ordinal slots.

Decoding costs items x rank per user, so a catalog of a million items would make every
step of fit and sample a million-column product. Items outside the `max_items` most
popular are merged (GUIDE §2: rare categories merged below a count threshold) into
ordinal slots: slot j is set for a user with more than j tail items. The model learns
how many tail items each user has, jointly with taste; `to_catalog` turns each drawn slot
into a distinct real tail item drawn by popularity. Every item key stays reachable, and
catalogs under the cap are modelled item for item (no slots).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

MAX_SLOTS = 256  # tail items per user that are modelled; heavier tails are cut here


@dataclass(frozen=True)
class ItemSpace:
    head: np.ndarray  # catalog index of each modelled item (model index = position)
    tail: np.ndarray  # catalog indices of the merged items
    tail_weights: np.ndarray  # their interaction counts, to draw them by popularity
    n_slots: int

    @property
    def n_model_items(self) -> int:
        return len(self.head) + self.n_slots

    @property
    def capped(self) -> bool:
        return len(self.tail) > 0

    @classmethod
    def identity(cls, n_items: int) -> ItemSpace:
        empty = np.zeros(0, dtype=np.int64)
        return cls(np.arange(n_items, dtype=np.int64), empty, empty.astype(np.float64), 0)

    @classmethod
    def build(cls, item_sets: sp.csr_matrix, max_items: int) -> ItemSpace:
        """Head = the most popular items (ties by catalog order); slots for the rest."""
        n_items = item_sets.shape[1]
        if n_items <= max_items:
            return cls.identity(n_items)
        popularity = np.asarray(item_sets.sum(axis=0)).ravel()
        order = np.lexsort((np.arange(n_items), -popularity))
        head_n = max(1, max_items - 2 * MAX_SLOTS)  # tail > both channels' slots
        tail = np.sort(order[head_n:])
        per_user = np.diff(item_sets[:, tail].tocsr().indptr)
        slots = int(min(MAX_SLOTS, max(1, per_user.max(initial=0))))
        return cls(np.sort(order[:head_n]), tail, popularity[tail].astype(np.float64), slots)

    def to_model(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """users x catalog → users x (head, slots)."""
        if not self.capped:
            return m
        head = m[:, self.head]
        tail_n = np.minimum(np.diff(m[:, self.tail].tocsr().indptr), self.n_slots)
        rows = np.repeat(np.arange(m.shape[0]), tail_n)
        cols = np.concatenate([np.arange(k) for k in tail_n]) if len(tail_n) else rows
        slots = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                              shape=(m.shape[0], self.n_slots))
        return sp.hstack([head, slots], format="csr")

    @cached_property
    def _tail_cdf(self) -> np.ndarray:
        """Cumulative tail popularity, once per model rather than once per batch."""
        cdf = np.cumsum(self.tail_weights)
        return cdf / cdf[-1]

    def _draw_tail(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cdf = self._tail_cdf
        return self.tail[np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)]

    def model_mask(self, per_item: np.ndarray) -> np.ndarray:
        """A per-catalog-item flag as a per-modelled-item flag; slots stand for tail items."""
        return np.concatenate([per_item[self.head], np.ones(self.n_slots, dtype=bool)])

    def to_catalog(self, user_index: np.ndarray, item_index: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
        """Model item indices → catalog indices; each user's slots become distinct tail items.

        `user_index` is non-decreasing. Tail items are drawn by popularity; a repeat within
        a user is redrawn, so a user never gets one item twice.
        """
        if not self.capped:
            return item_index
        is_head = item_index < len(self.head)
        out = np.empty_like(item_index)
        out[is_head] = self.head[item_index[is_head]]
        slot_rows = np.flatnonzero(~is_head)
        if len(slot_rows) == 0:
            return out
        users = user_index[slot_rows]
        picks = self._draw_tail(len(slot_rows), rng)
        for _ in range(100):
            dup = _repeated(users, picks)
            if not dup.any():
                break
            picks[dup] = self._draw_tail(int(dup.sum()), rng)
        else:  # a tiny tail: take the user's unused tail items in catalog order
            picks = _distinct_fallback(users, picks, self.tail)
        out[slot_rows] = picks
        return out


def _repeated(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True for every (user, item) pair seen earlier in the arrays."""
    order = np.lexsort((np.arange(len(items)), items, users))
    u, i = users[order], items[order]
    same = np.zeros(len(items), dtype=bool)
    same[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1])
    out = np.zeros(len(items), dtype=bool)
    out[order] = same
    return out


def _distinct_fallback(users: np.ndarray, picks: np.ndarray, tail: np.ndarray) -> np.ndarray:
    picks = picks.copy()
    for u in np.unique(users):
        rows = np.flatnonzero(users == u)
        seen: set[int] = set()
        free = (int(t) for t in tail)
        for r in rows:
            item = int(picks[r])
            while item in seen:
                item = next(free)
            seen.add(item)
            picks[r] = item
    return picks
