"""Content-addressed LLM caches: each score or generation is computed once, whatever run or stage asks for it.

A score's key is the sha256 of (tokenisation convention, scorer identity, prefix, suffix, target): the
full prompt text, the target, and the model + backend + dtype that scored it. Prefix and suffix enter
separately because they are tokenised separately (``pipeline.llm.base``), so the split is part of
what was scored; ``TOKENISATION`` names the convention, so scores made under an earlier one (which
tokenised "Message: " with a lone space token) are never served again.
A generation's key is the sha256 of (identity, prompt, max_new_tokens).

Values live in Parquet shards ``<root>/<time>-<random>.parquet`` (columns key: str and the value),
each written atomically after a chunk is computed: a crash or ``kill -9`` loses at most the chunk
in progress, and a restart computes only what is missing. A shard that cannot be read (truncated
file, foreign schema) is reported with a warning naming it, moved to ``<root>/corrupt/``, and its
values are recomputed when asked for again. Scores and generations keep separate roots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import ArtifactError, ConfigError
from pipeline.io import read_parquet, write_parquet
from pipeline.llm.base import Query, Scorer, report_progress

logger = logging.getLogger(__name__)


@dataclass
class CacheStats:
    """Counters since the cache was opened.

    Attributes:
        hits: requests answered without the LLM (already cached, or a duplicate within the call).
        computed: requests sent to the LLM.
        corrupt_shards: unreadable shards found, moved aside and to be recomputed.
    """

    hits: int = 0
    computed: int = 0
    corrupt_shards: int = 0


class _ShardedCache:
    """Values keyed by content, persisted as Parquet shards of (key, ``value_column``) under ``root``."""

    schema: dict[str, pl.DataType]

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stats = CacheStats()
        self._values: dict | None = None  # every shard, read on first use
        self._value_column = next(name for name in self.schema if name != "key")

    def _fill(
        self,
        keys: Sequence[str],
        *,
        validate: Callable[[list[int]], object],
        compute: Callable[[list[int]], Sequence],
        shard_size: int,
        progress: bool,
        desc: str,
    ) -> list:
        """The value of every key, in order, computing the missing ones in chunks of ``shard_size``.

        ``validate(indices)`` runs on the missing requests before anything is computed (so a bad
        request fails first); ``compute(indices)`` returns their values. Duplicate keys are computed once.
        """
        if shard_size < 1:
            raise ConfigError(f"{type(self).__name__} shard_size: must be >= 1, got {shard_size}")
        values = self._load()
        first = {}  # key -> index of its first request, for keys to compute
        for i, k in enumerate(keys):
            if k not in values:
                first.setdefault(k, i)
        missing = list(first.values())
        validate(missing)
        with report_progress(total=len(missing), enabled=progress and bool(missing), desc=desc) as update:
            for start in range(0, len(missing), shard_size):
                chunk = missing[start : start + shard_size]
                chunk_keys, chunk_values = [keys[i] for i in chunk], list(compute(chunk))
                shard = pl.DataFrame({"key": chunk_keys, self._value_column: chunk_values}, schema=self.schema)
                write_parquet(shard, self.root / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet")
                values.update(zip(chunk_keys, chunk_values))
                self.stats.computed += len(chunk)
                update(len(chunk))
        self.stats.hits += len(keys) - len(missing)
        return [values[k] for k in keys]

    def _load(self) -> dict:
        if self._values is None:
            self._values = {}
            for path in sorted(self.root.glob("*.parquet")):
                try:
                    shard = read_parquet(path, schema=self.schema)
                except ArtifactError as exc:
                    self._quarantine(path, exc)
                    continue
                self._values.update(zip(shard["key"].to_list(), shard[self._value_column].to_list()))
        return self._values

    def _quarantine(self, path: Path, exc: ArtifactError) -> None:
        aside = self.root / "corrupt" / path.name
        aside.parent.mkdir(exist_ok=True)
        path.replace(aside)
        self.stats.corrupt_shards += 1
        logger.warning("%s: %s; moved to %s, its values will be recomputed", type(self).__name__, exc, aside)


TOKENISATION = "joint-boundary"  # pipeline.llm.base.Scorer.encode: separate ids == joined ids


def _sha256(*parts: object) -> str:
    # JSON makes the concatenation unambiguous (no separator can be forged by the texts)
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class ScoreCache(_ShardedCache):
    """LLM scores keyed by content, persisted as Parquet shards under ``root``.

    Args:
        root: the cache folder (created on first write).
    """

    schema = {"key": pl.String, "logprob": pl.Float64}

    @staticmethod
    def key(*, identity: str, prefix: str, suffix: str, target: str) -> str:
        """The sha256 hex key of one query scored by the scorer named ``identity``."""
        return _sha256(TOKENISATION, identity, prefix, suffix, target)

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
        keys = [self.key(identity=scorer.identity, prefix=prefix, suffix=s, target=t) for s, t in queries]
        scores = self._fill(
            keys,
            validate=lambda indices: scorer.encode(prefix=prefix, queries=[queries[i] for i in indices]),
            compute=lambda indices: scorer.score(prefix=prefix, queries=[queries[i] for i in indices], progress=False).tolist(),
            shard_size=shard_size, progress=progress, desc="LLM scoring",
        )
        return np.array(scores, dtype=np.float64)


class GenerationCache(_ShardedCache):
    """Greedy LLM generations keyed by content, persisted as Parquet shards under ``root``.

    Args:
        root: the cache folder (created on first write); not a score cache's folder.
    """

    schema = {"key": pl.String, "text": pl.String}

    @staticmethod
    def key(*, identity: str, prompt: str, max_new_tokens: int) -> str:
        """The sha256 hex key of one prompt continued by the LLM named ``identity``."""
        return _sha256(identity, prompt, max_new_tokens)

    def generate_missing(
        self, *, llm: Scorer, prompts: Sequence[str], max_new_tokens: int, shard_size: int = 64, progress: bool = True
    ) -> list[str]:
        """Greedy continuations of ``prompts`` (see :meth:`Scorer.generate`), generating only uncached ones.

        Missing prompts are validated up front (:meth:`Scorer.encode_prompts`), then generated in
        chunks of ``shard_size``, each written as one shard before the next starts.

        Returns:
            One continuation per prompt, in prompt order.

        Raises:
            ConfigError: ``shard_size`` < 1.
            ScoringError: a missing prompt cannot be generated from (from the backend).
        """
        keys = [self.key(identity=llm.identity, prompt=p, max_new_tokens=max_new_tokens) for p in prompts]
        return self._fill(
            keys,
            validate=lambda indices: llm.encode_prompts(prompts=[prompts[i] for i in indices], max_new_tokens=max_new_tokens),
            compute=lambda indices: llm.generate(
                prompts=[prompts[i] for i in indices], max_new_tokens=max_new_tokens, progress=False
            ),
            shard_size=shard_size, progress=progress, desc="LLM generation",
        )
