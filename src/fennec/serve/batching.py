"""Rankings that arrive together share one scan of the model vectors."""

from __future__ import annotations

import asyncio

import numpy as np

from .. import kernels
from ..ranking import RankPlan
from .metrics import Metrics

__all__ = ["Batcher"]

# A ranking's (scores, order), as kernels.topk gives them.
_TopK = tuple[np.ndarray, np.ndarray]


class Batcher:
    """Scans the model vectors once for every ranking that is waiting at the same moment.

    Under load many ``POST /rank`` requests are parsed in one turn of the event loop.
    Each plans its ranking (one fitted version, its query vector, its ``where`` mask)
    and waits here; the first of a group schedules the scan for the loop's next turn,
    by which time the others have joined, and plans over the same vectors and mask are
    scored by one multi-query top-k (one pass over the models instead of one each).
    Nothing waits on a timer: a lone request is scanned on the next turn. Should a
    group's scan fail, each plan is rescanned alone so only its own request fails.
    """

    def __init__(self, metrics: Metrics):
        self._waiting: dict[tuple[int, int],
                            tuple[np.ndarray, np.ndarray | None, list[tuple[RankPlan, asyncio.Future[_TopK]]]]] = {}
        self.metrics = metrics

    async def topk(self, plan: RankPlan) -> _TopK:
        """The ``(scores, order)`` of ``plan``'s top ``k``, from the scan its group shares."""
        loop = asyncio.get_running_loop()
        # The group holds the vectors and mask, so their ids stay theirs while it waits.
        key = (id(plan.vectors), id(plan.mask))
        group = self._waiting.get(key)
        if group is None:
            group = self._waiting[key] = (plan.vectors, plan.mask, [])
            loop.call_soon(self._scan, key)
        answer: asyncio.Future[_TopK] = loop.create_future()
        group[2].append((plan, answer))
        return await answer

    def _scan(self, key: tuple[int, int]) -> None:
        vectors, mask, waiting = self._waiting.pop(key)
        self.metrics.add("fennec_rank_scans_total", 1)
        self.metrics.add("fennec_rank_queries_total", len(waiting))
        if len(waiting) > 1:
            try:
                queries = np.stack([plan.query for plan, _ in waiting])
                scores, order = kernels.topk(vectors, queries, max(plan.k for plan, _ in waiting), mask=mask)
            except Exception:  # noqa: BLE001 - rescanned one by one below, each failing on its own
                pass
            else:
                for row, (plan, answer) in enumerate(waiting):
                    if not answer.done():
                        answer.set_result((scores[row, :plan.k], order[row, :plan.k]))
                return
        for plan, answer in waiting:
            if answer.done():  # its request went away
                continue
            try:
                answer.set_result(kernels.topk(vectors, plan.query, plan.k, mask=mask))
            except Exception as error:  # noqa: BLE001 - handed to the request that caused it
                answer.set_exception(error)
