"""Loop-instance bookkeeping shared by the recording and the replaying recorder."""

from __future__ import annotations


class LoopBook:
    """Needs ``ctx``, ``depth``, ``buffers`` and ``_next_loop`` on the instance."""

    def _open_loop(self, name: str) -> tuple[int, int, int]:
        """Register a new instance of loop ``name``; returns (loop_id, parent ctx, depth)."""
        parent, depth = self.ctx, self.depth + 1
        loop_id = self._next_loop()
        self.buffers.loops.append((loop_id, parent, depth, name))
        return loop_id, parent, depth
