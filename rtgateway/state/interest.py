"""Interest management: a uniform grid over the first two position axes.

The cell size is the AOI radius, so every entity within the radius of a
point lies in the 3 x 3 block of cells around the point's cell. Blocks are
gathered once per tick and shared by every client of the same cell; each
cell remembers the last tick anything entered, left or moved in it, so a
client whose own entity and the cells around it are unchanged keeps its
view without looking. "Around" reaches as far as the view keeps entities
(the radius plus the leave margin: two rings of cells for a margin up to
the radius), so that an entity held by the margin beyond the 3 x 3 block
is still seen walking away.
"""

from __future__ import annotations

import math
from typing import Any

Cell = tuple[int, int]


class Grid:
    """Entities by cell."""

    __slots__ = ("_blocks", "_rings", "_size", "cells", "stamps")

    def __init__(self, size: float, keep: float | None = None) -> None:
        self._size = size
        self._rings = max(1, math.ceil((keep or size) / size - 1e-9))
        self.cells: dict[Cell, set[Any]] = {}
        self.stamps: dict[Cell, int] = {}
        self._blocks: dict[Cell, list[Any]] = {}

    def cell_of(self, position: tuple[float, ...]) -> Cell:
        size = self._size
        return (math.floor(position[0] / size), math.floor(position[1] / size))

    def place(self, entity: Any, tick: int) -> None:
        """Put ``entity`` in the cell of its position (or take it out: None)."""
        old = entity.cell
        new = self.cell_of(entity.pos) if entity.pos is not None else None
        if old != new:
            self._blocks.clear()
        if old is not None:
            self.stamps[old] = tick
            if old != new:
                members = self.cells[old]
                members.discard(entity)
                if not members:
                    del self.cells[old]
        if new is not None:
            self.stamps[new] = tick
            if old != new:
                self.cells.setdefault(new, set()).add(entity)
        entity.cell = new

    def remove(self, entity: Any, tick: int) -> None:
        entity.pos = None
        self.place(entity, tick)

    def block(self, cell: Cell) -> list[Any]:
        """The entities of the 3 x 3 cells around ``cell`` (shared this tick)."""
        found = self._blocks.get(cell)
        if found is None:
            x, y = cell
            cells = self.cells
            found = []
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    members = cells.get((x + dx, y + dy))
                    if members:
                        found.extend(members)
            self._blocks[cell] = found
        return found

    def changed_since(self, cell: Cell, tick: int) -> bool:
        """Whether anything entered, left or moved around ``cell`` after ``tick``."""
        x, y = cell
        stamps = self.stamps
        reach = range(-self._rings, self._rings + 1)
        for dx in reach:
            for dy in reach:
                if stamps.get((x + dx, y + dy), -1) > tick:
                    return True
        return False

    def prune(self, before: int) -> None:
        """Forget the stamps of empty cells older than ``before``.

        Every view is known good as of a later tick, so such a stamp can no
        longer make anyone look; without this, a wandering entity would
        leave a stamp in every cell it ever crossed.
        """
        cells = self.cells
        stale = [c for c, t in self.stamps.items() if t < before and c not in cells]
        for cell in stale:
            del self.stamps[cell]
