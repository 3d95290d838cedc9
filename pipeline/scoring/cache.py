"""Content-addressed score cache: each LLM score is computed once, whatever run or stage asks for it.

A score's key is the sha256 of (scorer identity, prefix, suffix, target): the full prompt text, the
target, and the model + backend + dtype that scored it. Prefix and suffix enter separately because
they are tokenised separately (``pipeline.scoring.base``), so the split is part of what was scored.

Scores live in Parquet shards ``<root>/<time>-<random>.parquet`` (columns key: str, logprob:
float64), each written atomically after a chunk of queries is scored: a crash or ``kill -9``
loses at most the chunk in progress, and a restart scores only what is missing. A shard that cannot
be read (truncated file, foreign schema) is reported with a warning naming it, moved to
``<root>/corrupt/``, and its scores are recomputed when asked for again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import ArtifactError, ConfigError
from pipeline.io import read_parquet, write_parquet
from pipeline.scoring.base import Query, Scorer, report_progress

logger = logging.getLogger(__name__)

SHARD_SCHEMA = {"key": pl.String, "logprob": pl.Float64}


@dataclass
class CacheStats:
    """Counters since the cache was opened.

    Attributes:
        hits: queries answered without the LLM (already cached, or a duplicate within the call).
        scored: queries sent to the LLM.
        corrupt_shards: unreadable shards found, moved aside and to be rescored.
    """

    hits: int = 0
    scored: int = 0
    corrupt_shards: int = 0


class ScoreCache:
    """Scores keyed by content, persisted as Parquet shards under ``root``.

    Args:
        root: the cache folder (created on first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stats = CacheStats()
        self._scores: dict[str, float] | None = None  # every shard, read on first use

    @staticmethod
    def key(*, identity: str, prefix: str, suffix: str, target: str) -> str:
        """The sha256 hex key of one query scored by the scorer named ``identity``."""
        # JSON makes the concatenation unambiguous (no separator can be forged by the texts)
        payload = json.dumps([identity, prefix, suffix, target], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def lookup(self, keys: Sequence[str]) -> dict[str, float]:
        """The cached scores among ``keys`` (missing keys are absent from the result)."""
        scores = self._load()
        return {k: scores[k] for k in keys if k in scores}

    def score_missing(
        self,
        *,
        scorer: Scorer,
        prefix: str,
        queries: Sequence[Query],
        shard_size: int = 256,
        progress: bool = True,
    ) -> np.ndarray:
        """Scores of ``queries`` (see :meth:`Scorer.score`), asking the LLM only for uncached ones.

        Missing queries are validated up front (:meth:`Scorer.encode`: a text too long for the model
        raises before anything is scored), then scored in chunks of ``shard_size``, each chunk
        written as one shard before the next starts.

        Args:
            scorer: the backend; its ``identity`` is part of every key.
            prefix: text shared by every query.
            queries: ``(suffix, target)`` pairs.
            shard_size: queries per chunk and shard (the most a crash can lose).
            progress: show a progress bar over the missing queries.

        Returns:
            float64 array, shape (len(queries),), in query order.

        Raises:
            ConfigError: ``shard_size`` < 1.
            ScoringError: a missing query cannot be scored (from the scorer).
        """
        if shard_size < 1:
            raise ConfigError(f"score cache shard_size: must be >= 1, got {shard_size}")
        keys = [self.key(identity=scorer.identity, prefix=prefix, suffix=s, target=t) for s, t in queries]
        scores = self._load()
        first = {}  # key -> index of its first query, for keys to score
        for i, k in enumerate(keys):
            if k not in scores:
                first.setdefault(k, i)
        missing = list(first.values())
        scorer.encode(prefix=prefix, queries=[queries[i] for i in missing])
        with report_progress(total=len(missing), enabled=progress and bool(missing), desc="LLM scoring") as update:
            for start in range(0, len(missing), shard_size):
                chunk = missing[start : start + shard_size]
                values = scorer.score(prefix=prefix, queries=[queries[i] for i in chunk], progress=False)
                chunk_keys = [keys[i] for i in chunk]
                shard = pl.DataFrame({"key": chunk_keys, "logprob": values}, schema=SHARD_SCHEMA)
                write_parquet(shard, self.root / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet")
                scores.update(zip(chunk_keys, values.tolist()))
                self.stats.scored += len(chunk)
                update(len(chunk))
        self.stats.hits += len(queries) - len(missing)
        return np.array([scores[k] for k in keys], dtype=np.float64)

    def _load(self) -> dict[str, float]:
        if self._scores is None:
            self._scores = {}
            for path in sorted(self.root.glob("*.parquet")):
                try:
                    shard = read_parquet(path, schema=SHARD_SCHEMA)
                except ArtifactError as exc:
                    self._quarantine(path, exc)
                    continue
                self._scores.update(zip(shard["key"].to_list(), shard["logprob"].to_list()))
        return self._scores

    def _quarantine(self, path: Path, exc: ArtifactError) -> None:
        aside = self.root / "corrupt" / path.name
        aside.parent.mkdir(exist_ok=True)
        path.replace(aside)
        self.stats.corrupt_shards += 1
        logger.warning("score cache: %s; moved to %s, its scores will be recomputed", exc, aside)
