"""The typed, validated schema of params.yaml.

Every stage calls :func:`load_params` first, so a misspelled key or a wrong type fails before any
work starts, with one line that names the key and what is allowed. Each field is documented here.

params.yaml is composed, never written by hand: conf/config.yaml (the base: the default offline CPU
profile), a dataset group conf/datasets/<name>.yaml and one overlay conf/profile/<name>.yaml holding
only what differs (paper, tiny, the siblings' reduced experiments, ...), merged by Hydra.
:func:`compose_params` does it with DVC's own composer, so ``make params PROFILE=paper`` and
``dvc exp run -S profile=paper`` (DVC's Hydra integration, .dvc/config) write the same bytes.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.prior_sources import COMBINATIONS
from pipeline.prompts import ADD_TEMPLATE, REPLACE_TEMPLATE, PromptTemplate, RewriteTemplate

PARAMS_FILE = Path("params.yaml")
CONF_DIR = Path("conf")  # the base conf/config.yaml, groups conf/datasets/ and conf/profile/
MIRROR_ENV = "CAPFLOW_DATA_MIRROR"
FULL_SETTING = "full"
_K_SHOT_SETTING = re.compile(r"k(?P<k>[1-9][0-9]*)-seed(?P<seed>-?[0-9]+)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpuriousParams(_Section):
    """A spurious-correlation subset (a text Waterbirds, ``pipeline.data.groups``): each group of ``column`` mostly
    carries one label in training, while the test set is balanced over label x group."""

    column: str = Field(description="the group column (one of the dataset's columns, e.g. category)")
    majority: dict[str, str] = Field(
        min_length=2, description="group value -> its majority label in training; groups not named are left out"
    )
    share: float = Field(0.9, gt=0, le=1, description="share of each group's training rows with its majority label")
    train_per_group: int = Field(gt=0, description="training rows per group (validation is drawn from them)")
    test_per_cell: int = Field(gt=0, description="test rows per (label, group) cell")
    seed: int = Field(0, description="seed of both draws")


class DecoyParams(_Section):
    """The decoy benchmark (``pipeline.data.decoy``): one planted, label-indicating nonce word per training and
    validation sentence; the test split stays clean, with matched, randomised and swapped copies beside it."""

    words: dict[str, str] = Field(min_length=2, description="label -> its decoy word (a nonce word, absent from the data)")
    rate: float = Field(
        1.0, gt=0, le=1, description="probability that a train/validation sentence carries its own label's decoy, "
        "else another label's"
    )
    seed: int = Field(0, description="seed of the insertion positions and drawn labels (per sentence id)")
    ceiling: str | None = Field(
        None, description="a twin dataset in data.datasets (same path, labels and slicing, no decoy): its baseline "
        "is the no-decoy ceiling of the report's positive controls"
    )


DECOY_COLUMN = "decoy"  # what a decoy benchmark adds to every decoyed split: the label whose decoy was planted

# what a decoy dataset and its ceiling twin must share, so they hold the same sentence ids and labels
DECOY_TWIN_FIELDS = ("hub", "labels", "max_test_per_label", "max_validation_per_label", "max_words", "columns",
                     "spurious")


class DatasetParams(_Section):
    """One dataset: a folder under the mirror (or ``path``), or the Hugging Face hub."""

    path: str | None = Field(None, description="folder under data.mirror (or absolute); default: the dataset's name")
    hub: str | None = Field(None, description="hub id used when no local folder exists; built-ins are known by name")
    labels: list[str] | None = Field(None, description="keep only these labels (a slice of the dataset)")
    max_test_per_label: int | None = Field(None, gt=0, description="keep at most this many test rows per label")
    max_validation_per_label: int | None = Field(
        None, gt=0, description="keep at most this many validation rows per label (every student predicts all of them)"
    )
    min_test: int | None = Field(None, gt=0, description="fail unless the (sliced) test split keeps at least this many rows")
    max_words: int | None = Field(
        None, gt=0, description="cut every text of every split to its first this many words (long reviews: the student "
        "reads max_length tokens, and ERASER must erase only words the student sees)"
    )
    columns: list[str] = Field(
        [], description="extra source columns to keep (e.g. [category]): carried into every split and k-shot file, "
        "and validated like the label (present in every split, never null or empty)"
    )
    spurious: SpuriousParams | None = Field(
        None, description="draw a spurious-correlation train subset and a balanced test set; validation is then "
        "drawn from that subset (by label x group), never the source's"
    )
    decoy: DecoyParams | None = Field(
        None, description="make this dataset a decoy benchmark (a positive control; pipeline/data/decoy.py)"
    )

    @field_validator("columns")
    @classmethod
    def _extra_columns(cls, value: list[str]) -> list[str]:
        """Refuse a reserved or repeated column name.

        Args:
            value: the configured column names.

        Returns:
            ``value`` unchanged.
        """
        reserved = [name for name in value if name in ("id", "text", "label")]
        if reserved:
            raise ValueError(f"{reserved[0]!r} is always kept; list only extra columns")
        if len(set(value)) < len(value):
            raise ValueError("a column is listed twice")
        return value

    @model_validator(mode="after")
    def _spurious_column_kept(self) -> DatasetParams:
        if self.spurious is not None:
            if self.spurious.column not in self.columns:
                raise ValueError(f"spurious.column: {self.spurious.column!r} must be one of columns {self.columns}")
            if self.max_test_per_label is not None:
                raise ValueError("spurious draws a balanced test split; drop max_test_per_label")
        if self.decoy is not None and DECOY_COLUMN in self.columns:
            raise ValueError(f"columns: {DECOY_COLUMN!r} is the column the decoy benchmark writes; rename the source's")
        return self


class DataParams(_Section):
    mirror: str | None = Field("../shared/data", description=f"local mirror folder; ${MIRROR_ENV} overrides")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="share of train drawn as validation where a dataset has none")
    split_seed: int = Field(0, description="seed of that stratified draw")
    datasets: dict[str, DatasetParams] = Field(description="name -> dataset; name is the artifact folder")


class FewshotParams(_Section):
    shots: list[Annotated[int, Field(gt=0)]] = Field(description="K examples per label for each k-shot setting")
    seeds: list[int] = Field(description="one k-shot draw per seed")
    full: bool = Field(True, description="also write the full-data setting")


class VllmParams(_Section):
    """The in-process ``vllm.LLM`` engine of ``scoring.backend: vllm``; the defaults are vLLM's own (its EngineArgs).

    On a shared GPU lower ``gpu_memory_utilization``; on several GPUs of one host raise
    ``tensor_parallel_size``; ``max_model_len`` caps the KV cache's context (Llama-3-8B: 8192).
    """

    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of each GPU's memory the engine may take (weights, activations, KV cache)"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs the model is split over (tensor parallelism)")
    max_model_len: int | None = Field(None, gt=0, description="context length in tokens; None = the model's own")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights and activations; auto = the model config's (bfloat16 for Llama 3)"
    )
    enable_prefix_caching: bool = Field(
        True, description="reuse the KV blocks of the shared prompt prefix across requests (next_token mode relies on it)"
    )


class ScoringParams(_Section):
    backend: Literal["transformers", "vllm", "openai"] = Field("transformers", description="LLM backend")
    model: str = Field(description="built-in name, local dir or hub id of the teacher LLM")
    base_url: str | list[str] | None = Field(
        None, description="OpenAI-compatible server for backend=openai, or a list of replicas that share the batches"
    )
    batch_size: int = Field(32, gt=0, description="suffixes scored per forward pass")
    vllm_mode: Literal["next_token", "prompt_logprobs"] = Field(
        "next_token", description="vllm/openai backends: next_token (a request per target token, prefix-cached; "
        "faster) or prompt_logprobs (a request per query, whole prompt recomputed)"
    )
    vllm: VllmParams = Field(VllmParams(), description="the vllm backend's engine settings")
    cap_template: PromptTemplate = Field(description="CAP prompt: instruction + {labels} + {sentence}")
    lime_template: PromptTemplate = Field(description="LIME prompt: {sentence} only")

    @field_validator("base_url", mode="before")
    @classmethod
    def _server_urls(cls, value: object) -> object:
        """Check ``base_url`` as written: one http(s) URL or a non-empty list of distinct ones.

        Args:
            value: the raw YAML value.

        Returns:
            ``value`` unchanged (a string or a list of strings; the backend takes either).
        """
        if value is None:
            return value
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list) or not urls:
            raise ValueError("give a server URL or a non-empty list of them")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        if len(set(urls)) < len(urls):
            raise ValueError("a server is listed twice")
        return value


class CapParams(_Section):
    n: int = Field(64, gt=0, description="random masks per sentence (plus the d single-word masks)")
    ridge_lambda: float = Field(1.0, gt=0, description="ridge penalty lambda")


class LimeParams(_Section):
    n: int = Field(64, gt=1, description="LIME samples per sentence (the first is the unmasked sentence)")
    kernel_width: float = Field(25.0, gt=0, description="exponential kernel width on cosine distance x 100")
    target: Literal["probability", "inverse_logprob"] = Field(
        "probability", description="regression target: p (the paper's LIME) or -1 / log p (CAP's transform)"
    )


class IgParams(_Section):
    steps: int = Field(50, gt=0, description="IG interpolation steps for the IG prior")
    internal_batch_size: int = Field(64, gt=0, description="captum internal batch size")
    teacher_seed: int = Field(0, description="which baseline student (by training seed) the IG prior comes from")


class OracleParams(_Section):
    """The oracle control's teacher: a cross-entropy student on the training pool, up to a cap (student.* otherwise)."""

    epochs: int = Field(3, gt=0, description="passes over its training sentences")
    batch_size: int = Field(16, gt=0, description="sentences per step")
    # 2,000 sentences x 3 epochs = 375 steps of 16, minutes on 2 cores; an uncapped 13,000-sentence pool ran > 10 minutes
    max_train: int | None = Field(
        2000, gt=0, description="train on at most this many pool sentences (a seeded draw); None = the whole pool"
    )


class PriorsParams(_Section):
    seed: int = Field(0, description="seed of the perturbations (per sentence, order independent)")
    cap: CapParams = CapParams()
    lime: LimeParams = LimeParams()
    ig: IgParams = IgParams()
    oracle: OracleParams = OracleParams()
    normalisation: Literal["l2", "minmax"] = Field("l2", description="per-sentence normalisation before fusion and in the loss")
    fusion: Literal["mean", "max"] = Field("mean", description="word-wise combination of normalised priors")


class StudentParams(_Section):
    """The students: every objective in ``objectives`` on every setting, and every objective of
    ``prior_objectives`` once per prior (the grid prior_objectives x priors, and x extra_priors on
    experiment.extra_settings).

    A student is (objective, prior or none, seed); objectives are registered in
    ``pipeline.training.objectives`` (checked when a student trains: prior-free ones in ``objectives``, ones that
    take a prior in ``prior_objectives``) and take their settings from ``settings.<objective>``.
    """

    model: str = Field(description="built-in name, local dir or hub id of the student classifier")
    max_length: int = Field(64, gt=4, description="tokens per sentence")
    epochs: int = Field(10, gt=0)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, gt=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping threshold")
    clip: Literal["total", "per_term", "none"] = Field(
        "total",
        description="total: clip the whole gradient; per_term: the cross-entropy's and the other terms' each on their own",
    )
    log_gradient_split: bool = Field(
        False, description="log the norms of the cross-entropy's gradient and the other terms' on their own, every step: "
        "one extra backward per step, ~25 % of a guided step on CPU (per_term clipping measures them anyway)",
    )
    seeds: list[int] = Field([0], min_length=1, description="training seeds")
    objectives: list[str] = Field(
        ["baseline"], min_length=1, description="prior-free objectives, each trained on every setting of experiment.datasets"
    )
    prior_objectives: list[str] = Field(
        ["guided"], description="objectives that take a prior: each trained once per prior of priors (and extra_priors)"
    )
    priors: list[str] = Field(
        [], description="prior combinations and controls (oracle, random): one student per objective of "
        "prior_objectives each, on prior_datasets"
    )
    extra_priors: list[str] = Field([], description="more prior combinations, trained on experiment.extra_settings only")
    settings: dict[str, dict[str, Any]] = Field(
        {}, description="objective -> its settings (its class's fields, pipeline/training/objectives/); "
        "every objective used needs one"
    )

    @model_validator(mode="after")
    def _objectives(self) -> StudentParams:
        for key, names in (("objectives", self.objectives), ("prior_objectives", self.prior_objectives)):
            dotted = [n for n in names if "." in n]
            if dotted:
                raise ValueError(f"student.{key}: objective name {dotted[0]!r} must not contain '.' "
                                 "(it separates objective and prior)")
            if len(set(names)) < len(names):
                raise ValueError(f"student.{key}: an objective is listed twice")
        both = [n for n in self.prior_objectives if n in self.objectives]
        if both:
            raise ValueError(f"student.prior_objectives: {both[0]!r} is in student.objectives too "
                             "(an objective either takes a prior or does not)")
        if (self.priors or self.extra_priors) and not self.prior_objectives:
            raise ValueError("student.prior_objectives: empty, but student.priors asks for prior students")
        used = self.objectives + (self.prior_objectives if self.priors or self.extra_priors else [])
        missing = [n for n in used if n not in self.settings]
        if missing:
            name = missing[0]
            raise ValueError(f"student.settings: no entry for objective {name!r} (write `{name}: {{}}` for its defaults)")
        return self


class LlmRewriteParams(_Section):
    """The LLM generator's prompts and decoding; the LLM is scoring's backend and model."""

    add_template: RewriteTemplate = Field(ADD_TEMPLATE, description="keyword-addition prompt")
    replace_template: RewriteTemplate = Field(REPLACE_TEMPLATE, description="keyword-replacement prompt")
    max_new_tokens: int = Field(64, gt=0, description="generated tokens at most per rewrite")
    keywords_in_prompt: int = Field(3, gt=0, description="adversarial keywords named in each prompt")


class AdversarialParams(_Section):
    generator: Literal["rules", "llm"] = Field(
        "rules", description="rules: deterministic keyword edits; llm: the scoring LLM rewrites, rules where it fails the check"
    )
    llm: LlmRewriteParams = LlmRewriteParams()
    keywords_per_class: int = Field(10, gt=0)
    targets_per_class: dict[str, int] = Field({}, description="target classes per source class by dataset (default 2)")
    seed: int = 0


class EvaluationParams(_Section):
    ig_steps: int = Field(20, gt=1, description="IG steps of the rationale attribution (captum needs 2 or more)")
    decoy_ig_steps: int = Field(
        32, gt=1, description="IG steps of the accurate attributions: decoy mass, and a prior-trained student's "
        "alignment to its prior (prior_cosine, prior_spearman)"
    )
    decoy_sentences: int = Field(100, gt=0, description="randomised-test sentences the decoy mass is measured on")
    alignment_sentences: int = Field(
        100, gt=0, description="training sentences (at most) a prior-trained student's alignment to its prior is measured on"
    )
    eraser_sentences: int | None = Field(
        None, gt=0, description="sentences (at most, a sample fixed by id) of each test split that ERASER reads; "
        "None: all. Accuracy always reads the whole split"
    )
    fractions: list[Annotated[float, Field(gt=0, le=1)]] = [0.01, 0.05, 0.10, 0.20, 0.50]
    batch_size: int = Field(64, gt=0)
    heatmap_sentences: int = Field(4, gt=0, description="test sentences drawn in reports/heatmaps (one per label)")
    rationales: list[Literal["ig", "grad_input"]] = Field(
        ["ig"], min_length=1, description="ERASER rationales: the student's own IG (the paper's) and/or gradient x input"
    )
    targets: list[str] = Field(
        [], description="datasets (of data.datasets, same labels) whose test splits every student is also evaluated on"
    )
    target_faithfulness: bool = Field(
        True, description="ERASER on each target's test split too (REGEX's out-of-domain claim); off, targets get "
        "accuracy and transfer gap only (AGM's and ALIGN's claims; ERASER was most of their evaluation time)"
    )
    group_column: str | None = Field(
        None, description="a column kept by data.datasets.<name>.columns: average and worst-group accuracy over label x group"
    )

    @field_validator("rationales")
    @classmethod
    def _ig_first(cls, value: list[str]) -> list[str]:
        if value[0] != "ig" or len(set(value)) < len(value):
            raise ValueError("start with 'ig' (the paper's rationale), each rationale once")
        return value


class ExperimentParams(_Section):
    datasets: list[str] = Field(description="datasets whose settings train and evaluate the students of every objective")
    prior_datasets: list[str] = Field(
        [], description="those of datasets that also get LLM scores, priors, adversarial sets and prior-guided students"
    )
    settings: list[str] = Field(description="settings (k<K>-seed<S> or full) run for each of them")
    extra_settings: list[str] = Field([], description="the settings (a subset of settings) where student.extra_priors train")


class ResourcesParams(_Section):
    """How many stages run at once: the one budget of the flow (pipeline/flow.py), `make run` and the Prefect
    deployment (prefect.yaml). No stage reads it, so changing it reruns nothing."""

    gpu_stages: int = Field(
        1, ge=1, description="stages that run a model at once (dvc.yaml gives them `device` or `scoring` params): "
        "the GPU's share, or on a machine without one the cores'"
    )
    cpu_stages: int = Field(1, ge=1, description="the other stages at once (data, k-shot draws, priors, fusion, report)")


class Params(_Section):
    profile: str = Field(description="name of this parameter set (default, paper, ...)")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="auto = cuda when available")
    data: DataParams
    fewshot: FewshotParams
    experiment: ExperimentParams
    scoring: ScoringParams
    priors: PriorsParams = PriorsParams()
    student: StudentParams
    adversarial: AdversarialParams = AdversarialParams()
    evaluation: EvaluationParams = EvaluationParams()
    resources: ResourcesParams = ResourcesParams()

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, raw: object) -> object:
        """Refuse a key that was renamed, pointing at its new name (no silent alias).

        Args:
            raw: the parsed YAML document.

        Returns:
            ``raw`` unchanged.
        """
        student = raw.get("student") if isinstance(raw, dict) else None
        if isinstance(student, dict) and "prior_objective" in student:
            value = student["prior_objective"]
            raise ValueError(f"student.prior_objective: renamed student.prior_objectives, a list of the objectives "
                             f"trained with each prior (write `prior_objectives: [{value}]`)")
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        for name in self.experiment.datasets:
            if name not in self.data.datasets:
                raise ValueError(f"experiment.datasets: {name!r} is not in data.datasets ({', '.join(self.data.datasets)})")
        for name, dataset in self.data.datasets.items():
            _check_ceiling(name, dataset, self.data.datasets)
            ceiling = dataset.decoy.ceiling if dataset.decoy is not None else None
            if ceiling is not None and name in self.experiment.datasets and ceiling not in self.experiment.datasets:
                raise ValueError(f"experiment.datasets: has {name!r} but not its decoy ceiling {ceiling!r} "
                                 f"(add it, or drop data.datasets.{name}.decoy.ceiling)")
        for name in self.evaluation.targets:
            if name not in self.data.datasets:
                raise ValueError(f"evaluation.targets: {name!r} is not in data.datasets ({', '.join(self.data.datasets)})")
        for name in self.experiment.prior_datasets:
            if name not in self.experiment.datasets:
                raise ValueError(f"experiment.prior_datasets: {name!r} is not in experiment.datasets")
        if self.experiment.prior_datasets and "baseline" not in self.student.objectives:
            raise ValueError("student.objectives: needs 'baseline' where experiment.prior_datasets is set (the IG teacher)")
        if (self.student.priors or self.student.extra_priors) and not self.experiment.prior_datasets:
            raise ValueError("student.priors: priors are computed on experiment.prior_datasets, which is empty")
        produced = set(setting_names(self.fewshot))
        for setting in self.experiment.settings:
            if setting not in produced:
                raise ValueError(f"experiment.settings: {setting!r} is not produced by fewshot (has {sorted(produced)})")
        for key, names in (("student.priors", self.student.priors), ("student.extra_priors", self.student.extra_priors)):
            unknown = [name for name in names if name not in COMBINATIONS]
            if unknown:
                raise ValueError(f"{key}: {unknown[0]!r} is not a prior combination or control ({', '.join(COMBINATIONS)})")
        both = set(self.student.priors) & set(self.student.extra_priors)
        if both:
            raise ValueError(f"student.extra_priors: {sorted(both)[0]!r} is in student.priors already")
        outside = [s for s in self.experiment.extra_settings if s not in self.experiment.settings]
        if outside:
            raise ValueError(f"experiment.extra_settings: {outside[0]!r} is not in experiment.settings")
        if self.priors.ig.teacher_seed not in self.student.seeds:
            raise ValueError(
                f"priors.ig.teacher_seed: {self.priors.ig.teacher_seed} is not in student.seeds {self.student.seeds}"
            )
        return self


def _check_ceiling(name: str, dataset: DatasetParams, datasets: dict[str, DatasetParams]) -> None:
    """Refuse a decoy ceiling that is not a decoy-free twin of ``name`` (ValueError naming the key)."""
    if dataset.decoy is None or dataset.decoy.ceiling is None:
        return
    key = f"data.datasets.{name}.decoy.ceiling"
    twin = datasets.get(dataset.decoy.ceiling)
    if twin is None:
        raise ValueError(f"{key}: {dataset.decoy.ceiling!r} is not in data.datasets ({', '.join(datasets)})")
    if twin.decoy is not None:
        raise ValueError(f"{key}: {dataset.decoy.ceiling!r} has a decoy itself; the ceiling is trained without one")
    # a path defaults to the dataset's name, so compare where each reads from
    differ = ["path"] * ((twin.path or dataset.decoy.ceiling) != (dataset.path or name))
    differ += [field for field in DECOY_TWIN_FIELDS if getattr(twin, field) != getattr(dataset, field)]
    if differ:
        raise ValueError(f"{key}: {dataset.decoy.ceiling!r} differs from {name!r} in {differ[0]} "
                         f"(a ceiling twin has the same data and slicing, without the decoy)")


def setting_names(fewshot: FewshotParams) -> list[str]:
    """The settings the k-shot stage writes: k<K>-seed<S> for every K and seed, then ``full``."""
    names = [f"{_shots_name(k)}-seed{s}" for k in fewshot.shots for s in fewshot.seeds]
    return names + ([FULL_SETTING] if fewshot.full else [])


def parse_setting(name: str) -> tuple[int | None, int | None]:
    """The shots per label K and the data seed S of a setting name (the inverse of :func:`setting_names`).

    Args:
        name: ``k<K>-seed<S>`` or ``full``.

    Returns:
        (K, S), or (None, None) for ``full`` (the whole training pool, no draw).

    Raises:
        ValueError: ``name`` is neither form.
    """
    if name == FULL_SETTING:
        return None, None
    match = _K_SHOT_SETTING.fullmatch(name)
    if match is None:
        raise ValueError(f"setting {name!r} is neither k<K>-seed<S> nor {FULL_SETTING}")
    return int(match["k"]), int(match["seed"])


def setting_group(name: str) -> str:
    """The name the replicates of a setting share: k<K> for every data seed S of k<K>-seed<S>, ``full`` for full.

    Raises:
        ValueError: ``name`` is not a setting name (:func:`parse_setting`).
    """
    k, _ = parse_setting(name)
    return name if k is None else _shots_name(k)


def _shots_name(k: int) -> str:
    return f"k{k}"


def _one_line(error: ValidationError, path: Path) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        section = Params
        for part in first["loc"][:-1]:
            field = section.model_fields.get(str(part)) if isinstance(section, type) else None
            section = field.annotation if field else None
        is_section = isinstance(section, type) and issubclass(section, BaseModel)
        allowed = ", ".join(section.model_fields) if is_section else "see pipeline/params.py"
        return f"{path}: unknown key {key!r} (allowed here: {allowed})"
    if first["type"] == "value_error" and not first["loc"]:  # a cross-field check: its message names the keys
        return f"{path}: {first['ctx']['error']}"
    if first["type"] == "value_error" and str(first["ctx"]["error"]).startswith(f"{key}."):  # a section's, naming its key
        return f"{path}: {first['ctx']['error']}"
    return f"{path}: {key}: {first['msg']} (got {first.get('input')!r})"


def parse_params(raw: object, *, source: Path = PARAMS_FILE) -> Params:
    """Validate a parsed YAML document; raise ConfigError with one line naming the key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error, source)) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read parameters ({exc})") from None
    return parse_params(raw, source=path)


def mirror_dir(params: Params) -> Path | None:
    """The local data mirror: $CAPFLOW_DATA_MIRROR, else data.mirror; None when it does not exist."""
    folder = os.environ.get(MIRROR_ENV) or params.data.mirror
    return Path(folder) if folder and Path(folder).is_dir() else None


def compose_params(overrides: Sequence[str] = (), *, conf_dir: Path = CONF_DIR) -> str:
    """The params.yaml text that ``conf_dir`` composes to under Hydra ``overrides``.

    Args:
        overrides: Hydra overrides, e.g. ``["profile=paper", "student.epochs=3"]`` (what ``dvc exp run -S``
            takes).
        conf_dir: the config folder (config.yaml and its groups).

    Returns:
        The YAML text, byte for byte what ``dvc exp run`` writes for the same overrides (DVC's
        ``compose_and_dump``).

    Raises:
        ConfigError: an override names no group option or key, or a conf file does not parse (one line).
    """
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / PARAMS_FILE.name
        try:
            compose_and_dump(output, str(Path(conf_dir).resolve()), None, "config", "", list(overrides))
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"{conf_dir}/ with {' '.join(overrides) or 'no overrides'}: {first}") from None
        return output.read_text(encoding="utf-8")


def write_params(overrides: Sequence[str] = (), *, conf_dir: Path = CONF_DIR, path: Path = PARAMS_FILE) -> Params:
    """Compose params (``compose_params``), validate them, and only then replace ``path``.

    A composition that does not validate leaves ``path`` as it was; the one-line error names the key
    and the conf file that sets it (the profile overlay, else the dataset group, else the base).
    """
    text = compose_params(overrides, conf_dir=conf_dir)
    try:
        params = Params.model_validate(yaml.safe_load(text))
    except ValidationError as error:
        key = [str(part) for part in error.errors()[0]["loc"]]
        raise ConfigError(_one_line(error, _conf_file_setting(key, overrides, conf_dir))) from None
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return params


def _conf_file_setting(key: list[str], overrides: Sequence[str], conf_dir: Path) -> Path:
    """The conf file that most likely sets ``key`` (its parts): the selected profile overlay, then the dataset
    group, then the base, the first that holds the key's last part as a YAML key; else ``conf_dir``."""
    base = yaml.safe_load((conf_dir / "config.yaml").read_text(encoding="utf-8"))
    chosen = {k: v for item in base.get("defaults", []) if isinstance(item, dict) for k, v in item.items()}
    chosen |= dict(o.split("=", 1) for o in overrides if "=" in o and o.split("=", 1)[0] in chosen)
    candidates = [conf_dir / group / f"{chosen[group]}.yaml" for group in ("profile", "datasets") if chosen.get(group)]
    pattern = re.compile(rf"^\s*{re.escape(key[-1])}:|[{{,]\s*{re.escape(key[-1])}:", re.M) if key else None
    for candidate in [*candidates, conf_dir / "config.yaml"]:
        if pattern and candidate.is_file() and pattern.search(candidate.read_text(encoding="utf-8")):
            return candidate
    return conf_dir


if __name__ == "__main__":
    import typer

    from pipeline.cli import stage_app

    def compose(overrides: Annotated[list[str] | None, typer.Argument(help="Hydra overrides: profile=paper student.epochs=3")]
                = None) -> None:
        """Compose conf/ into params.yaml; a composition that does not validate leaves params.yaml as it was."""
        params = write_params(overrides or [])
        print(f"{PARAMS_FILE}: profile {params.profile!r} from {CONF_DIR}/ with {' '.join(overrides or []) or 'no overrides'}")

    stage_app(compose)()
