"""Dataset sources: a local mirror folder, else the Hugging Face hub; validated, with stable ids.

A dataset folder holds ``train``, ``test`` and optionally ``validation`` as ``.parquet`` or
``.csv`` with columns ``text`` and ``label`` (an ``id`` column is kept if present), and optionally
``labels.txt`` (one label per line). Any folder in this format works by configuration alone.
Extra columns named in ``DatasetParams.columns`` (a group such as products_amazon's ``category``)
are kept as strings after ``label``, checked like the label. ``DatasetParams.spurious`` then draws a
spurious-correlation training subset and a balanced test set over label x group (a text Waterbirds).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipeline.errors import ConfigError, DataError
from pipeline.data.groups import balanced_counts, sample_cells, spurious_counts
from pipeline.params import DatasetParams, Params, SpuriousParams, mirror_dir

SPLITS = ("train", "validation", "test")
REQUIRED_SPLITS = ("train", "test")

# Hub sources of the built-in datasets (Parquet conversions on the hub, read without `datasets`).
# Banking77: PolyAI/banking77 (Casanueva et al. 2020); CLINC150: clinc/clinc_oos, config "plus"
# (Larson et al. 2019; its "oos" class is dropped like the mirror's); HWU64: the 64-intent split of
# Liu et al. 2019 as published by DeepPavlov/hwu64 (not verified against a live hub from here).
HUB_SOURCES = {
    "banking77": {"repo": "PolyAI/banking77", "config": "default", "text": "text", "label": "label"},
    "clinc150": {"repo": "clinc/clinc_oos", "config": "plus", "text": "text", "label": "intent", "drop": ["oos"]},
    "hwu64": {"repo": "DeepPavlov/hwu64", "config": "default", "text": "utterance", "label": "label"},
}


def _read_csv(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        return pl.read_csv(io.BytesIO(raw), infer_schema=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def _read_split(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return _read_csv(path)
    try:
        return pl.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None


def read_folder(folder: Path) -> tuple[dict[str, pl.DataFrame], dict[str, Path], list[str] | None]:
    """Read every split present in ``folder``.

    Returns:
        (frames by split, the file each came from, the labels.txt label list or None)
    """
    frames, files = {}, {}
    for split in SPLITS:
        candidates = [folder / f"{split}.{ext}" for ext in ("parquet", "csv") if (folder / f"{split}.{ext}").is_file()]
        if candidates:
            files[split] = candidates[0]
            frames[split] = _read_split(candidates[0])
    labels_file = folder / "labels.txt"
    labels = None
    if labels_file.is_file():
        labels = [line.strip() for line in labels_file.read_text("utf-8").splitlines() if line.strip()]
    return frames, files, labels


def read_hub(name: str, *, repo: str | None) -> tuple[dict[str, pl.DataFrame], dict[str, str], None]:
    """Download a dataset's Parquet conversion from the Hugging Face hub (needs network).

    Integer labels are mapped to names through the ClassLabel features that the hub's Parquet
    files carry in their ``huggingface`` schema metadata.
    """
    source = dict(HUB_SOURCES.get(name, {"config": "default", "text": "text", "label": "label"}))
    repo = repo or source.get("repo")
    if repo is None:
        raise DataError(f"dataset {name!r}: no local folder and no hub id (set data.datasets.{name}.hub)")
    import pyarrow.parquet as pq
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(repo, repo_type="dataset", revision="refs/convert/parquet",
                                       allow_patterns=[f"{source['config']}/*"]))
    except Exception as exc:
        raise DataError(
            f"dataset {name!r}: cannot download {repo} from the Hugging Face hub ({type(exc).__name__}); "
            f"offline, point data.mirror or ${'CAPFLOW_DATA_MIRROR'} at a folder with {name}/train.parquet"
        ) from None
    frames, files = {}, {}
    for split in SPLITS:
        parts = sorted((local / source["config"]).glob(f"{'valid*' if split == 'validation' else split}/*.parquet"))
        if not parts:
            continue
        table = pl.concat([pl.from_arrow(pq.read_table(p)) for p in parts])
        meta = pq.read_schema(parts[0]).metadata or {}
        features = json.loads(meta.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        names = features.get(source["label"], {}).get("names")
        label = pl.col(source["label"])
        label = label.map_elements(lambda i, names=names: names[i], return_dtype=pl.String) if names else label.cast(pl.String)
        frame = table.select(pl.col(source["text"]).alias("text"), label.alias("label"))
        frames[split] = frame.filter(~pl.col("label").is_in(source.get("drop", [])))
        files[split] = f"hub:{repo}/{source['config']}/{split}"
    return frames, files, None


def validate_split(
    frame: pl.DataFrame, *, where: str, split: str, label_set: set[str], columns: Sequence[str] = ()
) -> pl.DataFrame:
    """Check one split and return it with columns id, text (stripped), label, then ``columns``.

    Args:
        frame: the split as read.
        where: the file it came from (named in errors).
        split: its name (prefix of generated ids).
        label_set: the allowed labels.
        columns: extra columns to keep, as strings, unchanged; each must exist and hold no null
            or empty value.

    Raises:
        DataError: naming ``where`` and the missing column or the first offending row (0-based row
            index of the file).
    """
    for column in ("text", "label", *columns):
        if column not in frame.columns:
            raise DataError(f"{where}: missing column {column!r} (has {frame.columns})")
    if "id" not in frame.columns:
        row_number = pl.int_range(pl.len()).cast(pl.String).str.zfill(6)
        frame = frame.with_columns(pl.format("{}-{}", pl.lit(split), row_number).alias("id"))
    frame = frame.select(
        pl.col("id").cast(pl.String),
        pl.col("text").cast(pl.String).str.strip_chars(),
        pl.col("label").cast(pl.String),
        *(pl.col(column).cast(pl.String) for column in columns),
    )
    frame = frame.with_row_index("_row")
    empty = frame.filter(pl.col("text").is_null() | (pl.col("text") == ""))
    if len(empty):
        raise DataError(f"{where}: row {empty['_row'][0]}: empty or whitespace-only text")
    for column in columns:
        blank = frame.filter(pl.col(column).is_null() | (pl.col(column).str.strip_chars() == ""))
        if len(blank):
            raise DataError(f"{where}: row {blank['_row'][0]}: empty {column!r} value")
    unknown = frame.filter(pl.col("label").is_null() | ~pl.col("label").is_in(sorted(label_set)))
    if len(unknown):
        raise DataError(f"{where}: row {unknown['_row'][0]}: label {unknown['label'][0]!r} is not in the label set")
    duplicated = frame.filter(~pl.col("id").is_first_distinct())
    if len(duplicated):
        raise DataError(f"{where}: row {duplicated['_row'][0]}: duplicate id {duplicated['id'][0]!r}")
    return frame.drop("_row")


def _stratified_draw(frame: pl.DataFrame, *, fraction: float, seed: int, by: Sequence[str] = ("label",)) -> pl.DataFrame:
    """At least one row per stratum (rows sharing the ``by`` columns) with two or more rows, about ``fraction`` of each."""
    by = list(by)
    return (
        frame.with_columns(
            pl.int_range(pl.len()).shuffle(seed=seed).over(by).alias("_rank"), pl.len().over(by).alias("_n")
        )
        .filter((pl.col("_rank") < (pl.col("_n") * fraction).round().clip(lower_bound=1)) & (pl.col("_n") > 1))
        .drop("_rank", "_n")
        .sort("id")
    )


def spurious_splits(name: str, splits: dict[str, pl.DataFrame], spurious: SpuriousParams, *, labels: Sequence[str],
                    validation_fraction: float, split_seed: int) -> dict[str, pl.DataFrame]:
    """A text Waterbirds: each group of ``spurious.column`` carries its majority label in ``share`` of its training
    rows, the test set is balanced over (label, group) cells, and validation is drawn from the skewed training
    subset stratified by label x group, so tuning sees the training distribution's shift, not the test's.

    Args:
        name: the dataset (named in errors).
        splits: its validated train and test frames.
        spurious: the draw's parameters.
        labels: the label set.
        validation_fraction, split_seed: the validation draw.

    Returns:
        {"train", "validation", "test"}; validation rows stay in train, as every drawn validation split does.

    Raises:
        DataError: a cell of either split is too small, naming ``data.datasets.<name>.spurious``.
    """
    key = f"data.datasets.{name}.spurious"
    try:
        train_counts = spurious_counts(majority=spurious.majority, labels=labels, per_group=spurious.train_per_group,
                                       majority_share=spurious.share)
    except ValueError as exc:
        raise ConfigError(f"{key}.majority: {exc}") from None
    test_counts = balanced_counts(labels=labels, groups=sorted(spurious.majority), per_cell=spurious.test_per_cell)
    drawn = {}
    for split, counts in (("train", train_counts), ("test", test_counts)):
        try:
            drawn[split] = sample_cells(splits[split], counts=counts, group=spurious.column, seed=spurious.seed)
        except DataError as exc:
            raise DataError(f"{key}: {split} split: {exc}") from None
    drawn["validation"] = _stratified_draw(drawn["train"], fraction=validation_fraction, seed=split_seed,
                                           by=("label", spurious.column))
    return drawn


def prepare_dataset(name: str, config: DatasetParams, *, mirror: Path | None, validation_fraction: float,
                    split_seed: int) -> dict[str, pl.DataFrame]:
    """Resolve, read, validate and slice one dataset.

    A missing validation split is drawn from train with a seeded stratified split; those rows stay
    in train.parquet (so it keeps the source's size) and the k-shot stage never draws them. With
    ``config.spurious`` every split comes from ``spurious_splits`` (the source's validation is unused).

    Returns:
        {"train", "validation", "test"} -> frames with columns id, text, label, then ``config.columns``
    """
    folder = Path(config.path or name)
    if not folder.is_absolute() and mirror is not None:
        folder = mirror / folder
    if folder.is_dir():
        frames, files, labels = read_folder(folder)
    else:
        frames, files, labels = read_hub(name, repo=config.hub)
    for split in REQUIRED_SPLITS:
        if split not in frames:
            raise DataError(f"{folder}: missing split {split!r} (need {split}.parquet or {split}.csv)")
    label_set = set(labels) if labels is not None else set(frames["train"]["label"].drop_nulls().cast(pl.String))
    out = {
        split: validate_split(frame, where=str(files[split]), split=split, label_set=label_set, columns=config.columns)
        for split, frame in frames.items()
    }
    if config.labels is not None:
        missing = sorted(set(config.labels) - label_set)
        if missing:
            raise DataError(f"data.datasets.{name}.labels: {missing} not in the label set of {folder}")
        out = {split: frame.filter(pl.col("label").is_in(config.labels)) for split, frame in out.items()}
    if config.max_words is not None:
        first_words = pl.col("text").str.extract(rf"^\S+(?:\s+\S+){{0,{config.max_words - 1}}}", group_index=0)
        out = {split: frame.with_columns(first_words) for split, frame in out.items()}
    if config.spurious is not None:
        out = spurious_splits(name, out, config.spurious, labels=sorted(config.labels or label_set),
                              validation_fraction=validation_fraction, split_seed=split_seed)
    if config.max_test_per_label is not None:
        out["test"] = _first_per_label(out["test"], config.max_test_per_label)
    if config.min_test is not None and len(out["test"]) < config.min_test:
        raise DataError(
            f"data.datasets.{name}.min_test: the test split of {files['test']} has {len(out['test'])} rows"
            f"{' after slicing' if config.labels or config.max_test_per_label else ''}, "
            f"fewer than the {config.min_test} asked for"
        )
    if "validation" not in out:
        out["validation"] = _stratified_draw(out["train"], fraction=validation_fraction, seed=split_seed)
    if config.max_validation_per_label is not None:
        out["validation"] = _first_per_label(out["validation"], config.max_validation_per_label)
    return out


def _first_per_label(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first ``n`` rows of each label, in the frame's order."""
    return frame.filter(pl.int_range(pl.len()).over("label") < n)


def build_dataset(params: Params, name: str) -> dict[str, pl.DataFrame]:
    """The validated splits of the configured dataset ``name``, read from the mirror or the hub.

    Args:
        params: ``data`` (the dataset's entry, the mirror, the validation draw).
        name: a key of ``data.datasets``.

    Returns:
        split name (train, validation, test) -> frame with columns id, text, label; for a dataset with
        ``decoy``, train and validation carry the decoys and the test copies are added
        (``pipeline.data.decoy.decoy_splits``).

    Raises:
        ConfigError: ``name`` is not configured.
    """
    if name not in params.data.datasets:
        raise ConfigError(f"dataset {name!r} is not in data.datasets ({', '.join(params.data.datasets)})")
    config = params.data.datasets[name]
    splits = prepare_dataset(
        name,
        config,
        mirror=mirror_dir(params),
        validation_fraction=params.data.validation_fraction,
        split_seed=params.data.split_seed,
    )
    if config.decoy is None:
        return splits
    # imported here: only a decoy dataset needs the student's tokenizer (transformers)
    from pipeline.data.decoy import decoy_splits
    from pipeline.models import load_tokenizer

    return decoy_splits(name, splits, config.decoy, tokenizer=load_tokenizer(params.student.model))
