
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.params import (
    FewshotParams,
    compose_params,
    parse_params,
    parse_setting,
    setting_group,
    setting_names,
    write_params,
)
from pipeline.training.students import objective_from_params
from tests.conftest import REPO


def _default() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


CONF = REPO / "conf"
PROFILES = sorted(p.stem for p in (CONF / "profile").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_profiles_validate_and_build_their_objectives(profile):
    params = parse_params(yaml.safe_load(compose_params([f"profile={profile}"], conf_dir=CONF)))
    assert params.profile == profile
    assert params.experiment.datasets
    assert set(params.experiment.settings) <= set(setting_names(params.fewshot))
    priors = params.student.priors or params.student.extra_priors
    for name in params.student.objectives + (params.student.prior_objectives if priors else []):
        assert objective_from_params(params, name).display


def test_misspelled_key_fails_with_one_line_naming_it():
    raw = _default()
    raw["student"]["epocs"] = 3
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "\n" not in message
    assert "'student.epocs'" in message and "epochs" in message  # names the key and what is allowed


def test_unknown_top_level_key():
    raw = _default() | {"sedd": 1}
    with pytest.raises(ConfigError, match="unknown key 'sedd'.*allowed here: profile"):
        parse_params(raw)


def test_wrong_type_names_key_and_value():
    raw = _default()
    raw["priors"]["cap"]["n"] = "many"
    with pytest.raises(ConfigError, match=r"priors\.cap\.n: .*integer.*'many'"):
        parse_params(raw)


def test_the_stage_budget_is_two_positive_counts():
    raw = _default()
    assert parse_params(raw).resources.gpu_stages == 2
    raw["resources"]["gpu_stages"] = 0
    with pytest.raises(ConfigError, match=r"^params.yaml: resources\.gpu_stages: .*greater than or equal to 1"):
        parse_params(raw)
    raw["resources"] = {"gpu_stages": 1, "cpu_stages": 1, "jobs": 2}
    with pytest.raises(ConfigError, match=r"^params.yaml: unknown key 'resources.jobs' \(allowed here: gpu_stages, cpu_stages\)"):
        parse_params(raw)


def test_the_oracle_pool_cap_is_a_positive_count_or_none():
    raw = _default()
    assert parse_params(raw).priors.oracle.max_train == 2000
    raw["priors"]["oracle"]["max_train"] = None
    assert parse_params(raw).priors.oracle.max_train is None
    raw["priors"]["oracle"]["max_train"] = 0
    with pytest.raises(ConfigError, match=r"^params.yaml: priors\.oracle\.max_train: .*greater than 0"):
        parse_params(raw)


def test_bad_choice_lists_allowed_values():
    raw = _default()
    raw["scoring"]["backend"] = "llamacpp"
    with pytest.raises(ConfigError, match="scoring.backend: .*'transformers', 'vllm' or 'openai'"):
        parse_params(raw)
    raw = _default()
    raw["scoring"]["vllm_mode"] = "fast"
    with pytest.raises(ConfigError, match="scoring.vllm_mode: .*'next_token' or 'prompt_logprobs'"):
        parse_params(raw)


def test_experiment_setting_must_be_produced():
    raw = _default()
    raw["experiment"]["settings"] = ["k7-seed0"]
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    produced = [f"k5-seed{s}" for s in range(5)]
    assert str(info.value) == f"params.yaml: experiment.settings: 'k7-seed0' is not produced by fewshot (has {produced})"


def test_prior_objectives_is_a_list_crossed_with_the_priors():
    raw = _default()
    assert parse_params(raw).student.prior_objectives == ["guided"]
    del raw["student"]["prior_objectives"]
    assert parse_params(raw).student.prior_objectives == ["guided"]  # the default
    raw["student"].update(prior_objectives=["guided", "rrr"])
    raw["student"]["settings"]["rrr"] = {"lam": 1.0}
    params = parse_params(raw)
    assert params.student.prior_objectives == ["guided", "rrr"]
    assert objective_from_params(params, "rrr").lam == 1.0


def test_the_scalar_prior_objective_is_refused_pointing_at_the_list():
    raw = _default()
    raw["student"]["prior_objective"] = "rrr"
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert str(info.value) == ("params.yaml: student.prior_objective: renamed student.prior_objectives, a list of the "
                               "objectives trained with each prior (write `prior_objectives: [rrr]`)")


@pytest.mark.parametrize(("objectives", "prior_objectives", "message"), [
    (["baseline"], ["guided", "rrr"], "student.settings: no entry for objective 'rrr' (write `rrr: {}` for its defaults)"),
    (["baseline"], ["guided", "guided"], "student.prior_objectives: an objective is listed twice"),
    (["baseline"], ["guided.cap"], "student.prior_objectives: objective name 'guided.cap' must not contain '.'"),
    (["baseline", "guided"], ["guided"], "student.prior_objectives: 'guided' is in student.objectives too"),
    (["baseline"], [], "student.prior_objectives: empty, but student.priors asks for prior students"),
])
def test_prior_objectives_are_checked_in_one_line_naming_the_key(objectives, prior_objectives, message):
    raw = _default()
    raw["student"].update(objectives=objectives, prior_objectives=prior_objectives)
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert str(info.value).startswith(f"params.yaml: {message}") and "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "message"), [
    ("guidde", "params.yaml: student.prior_objectives: unknown objective 'guidde' (registered: baseline, guided, rrr,"),
    ("agm", "params.yaml: student.prior_objectives: objective 'agm' takes no prior: list it in student.objectives"),
])
def test_an_unregistered_or_prior_free_prior_objective_fails_when_built(name, message):
    """The registry imports torch, which params.py does not: a registered name is checked when the student is built
    (the train stage), still in one line naming the key and params.yaml."""
    raw = _default()
    raw["student"]["prior_objectives"] = ["guided", name]
    raw["student"]["settings"][name] = {}
    params = parse_params(raw)
    with pytest.raises(ConfigError) as info:
        objective_from_params(params, name)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_prior_combination():
    raw = _default()
    raw["student"]["priors"] = ["cap", "shap"]
    with pytest.raises(ConfigError, match="student.priors: 'shap' is not a prior combination or control"):
        parse_params(raw)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda raw: raw["student"].update(extra_priors=["oracel"]),
     "student.extra_priors: 'oracel' is not a prior combination or control"),
    (lambda raw: raw["student"].update(extra_priors=["oracle"]), "student.extra_priors: 'oracle' is in student.priors already"),
    (lambda raw: raw["experiment"].update(extra_settings=["k5-seed9"]),
     "experiment.extra_settings: 'k5-seed9' is not in experiment.settings"),
])
def test_extra_rows_are_checked(edit, message):
    raw = _default()
    edit(raw)
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_setting_names():
    params = parse_params(_default())
    assert setting_names(params.fewshot) == [f"k5-seed{s}" for s in range(5)]


def test_parse_setting_inverts_setting_names():
    names = setting_names(FewshotParams(shots=[1, 16], seeds=[0, -3], full=True))
    assert names == ["k1-seed0", "k1-seed-3", "k16-seed0", "k16-seed-3", "full"]
    assert [parse_setting(name) for name in names] == [(1, 0), (1, -3), (16, 0), (16, -3), (None, None)]
    assert [setting_group(name) for name in names] == ["k1", "k1", "k16", "k16", "full"]


@pytest.mark.parametrize("name", ["k5", "k0-seed1", "k5-seed", "5-seed0", "k5-seed0x", "Full", ""])
def test_parse_setting_rejects_other_names(name):
    with pytest.raises(ValueError, match="is neither k<K>-seed<S> nor full"):
        parse_setting(name)


def test_adversarial_generator_and_its_prompts_are_checked():
    raw = _default()
    raw["adversarial"]["generator"] = "gpt4o"
    with pytest.raises(ConfigError, match=r"adversarial\.generator: .*'rules' or 'llm' \(got 'gpt4o'\)"):
        parse_params(raw)
    raw["adversarial"] |= {"generator": "llm", "llm": {"add_template": {"user": "Add {keywords}"}}}
    with pytest.raises(ConfigError, match=r"adversarial\.llm\.add_template\.user: .*exactly one \{sentence\}"):
        parse_params(raw)
    raw["adversarial"]["llm"] = {"max_new_tokens": 16}
    llm = parse_params(raw).adversarial.llm
    assert llm.max_new_tokens == 16 and "{keywords}" in llm.add_template.user  # unset prompts keep the defaults


def test_scoring_base_url_is_one_server_or_a_list_of_replicas():
    raw = _default()
    for urls in ("http://gpu1:8000", ["http://gpu1:8000", "http://gpu2:8000"]):
        raw["scoring"]["base_url"] = urls
        assert parse_params(raw).scoring.base_url == urls
    for urls, error in (
        ([], "give a server URL or a non-empty list of them"),
        (8000, "give a server URL or a non-empty list of them"),
        (["http://gpu1:8000", "gpu2:8000"], "'gpu2:8000' is not an http:// or https:// URL"),
        (["http://gpu1:8000", "http://gpu1:8000"], "a server is listed twice"),
    ):
        raw["scoring"]["base_url"] = urls
        with pytest.raises(ConfigError, match=rf"^params.yaml: scoring\.base_url: Value error, {error}"):
            parse_params(raw)


def test_evaluation_targets_must_be_datasets_and_ig_the_first_rationale():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    with pytest.raises(ConfigError, match="evaluation.targets: 'tweets' is not in data.datasets"):
        parse_params(raw | {"evaluation": {**raw["evaluation"], "targets": ["tweets"]}})
    with pytest.raises(ConfigError, match="evaluation.rationales: .*start with 'ig'"):
        parse_params(raw | {"evaluation": {**raw["evaluation"], "rationales": ["grad_input"]}})


DECOY = "banking77_mini_decoy"  # the default profile's decoy benchmark, ceiling banking77_mini


def _decoy(raw: dict) -> dict:
    return raw["data"]["datasets"][DECOY]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda raw: _decoy(raw)["decoy"].update(ceiling="banking77_tiny"),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77_tiny' is not in data.datasets (banking77, banking77_mini, {DECOY})"),
    (lambda raw: raw["data"]["datasets"]["banking77_mini"].update(max_test_per_label=30),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77_mini' differs from '{DECOY}' in max_test_per_label"),
    (lambda raw: raw["data"]["datasets"]["banking77_mini"].update(labels=["card_arrival", "exchange_rate"]),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77_mini' differs from '{DECOY}' in labels"),
    (lambda raw: _decoy(raw).update(path="banking77_copy"),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77_mini' differs from '{DECOY}' in path"),
    (lambda raw: _decoy(raw)["decoy"].update(ceiling="banking77"),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77' differs from '{DECOY}' in labels"),
    (lambda raw: raw["data"]["datasets"]["banking77_mini"].update(decoy=_decoy(raw)["decoy"] | {"ceiling": None}),
     f"data.datasets.{DECOY}.decoy.ceiling: 'banking77_mini' has a decoy itself"),
    (lambda raw: raw["experiment"].update(datasets=[DECOY], prior_datasets=[DECOY]),
     f"experiment.datasets: has '{DECOY}' but not its decoy ceiling 'banking77_mini'"),
    (lambda raw: _decoy(raw)["decoy"].update(rate=0), f"data.datasets.{DECOY}.decoy.rate: Input should be greater than 0"),
    (lambda raw: _decoy(raw)["decoy"].update(rate=1.5),
     f"data.datasets.{DECOY}.decoy.rate: Input should be less than or equal to 1"),
    (lambda raw: _decoy(raw)["decoy"].update(wrods={}), f"unknown key 'data.datasets.{DECOY}.decoy.wrods'"),
    (lambda raw: _decoy(raw).update(columns=["decoy"]),
     f"data.datasets.{DECOY}: Value error, columns: 'decoy' is the column the decoy benchmark writes"),
])
def test_decoy_params_are_checked_in_one_line_naming_the_key(edit, message):
    raw = _default()
    edit(raw)
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert "\n" not in str(info.value) and message in str(info.value), str(info.value)


def test_a_decoy_dataset_without_a_ceiling_needs_no_twin():
    raw = _default()
    _decoy(raw)["decoy"].pop("ceiling")
    raw["experiment"].update(datasets=[DECOY], prior_datasets=[DECOY])
    assert parse_params(raw).data.datasets[DECOY].decoy.ceiling is None


def test_params_yaml_is_the_composition_of_the_default_profile():
    held = yaml.safe_load((REPO / "params.yaml").read_text())
    assert held == yaml.safe_load(compose_params([], conf_dir=CONF)), "params.yaml drifted from conf/: run `make params`"


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """Dotted path -> value of every leaf; a list or an empty mapping is one leaf (Hydra replaces lists whole)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, (*prefix, key))
        else:
            out[(*prefix, key)] = value
    return out


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "default"])
def test_an_overlay_holds_only_what_differs_from_the_base(profile):
    overlay = yaml.safe_load((CONF / "profile" / f"{profile}.yaml").read_text())
    own_datasets = {"override /datasets": None} in overlay.pop("defaults", [])  # the base's group dropped, not merged
    base = yaml.safe_load(compose_params([], conf_dir=CONF))
    if own_datasets:
        del base["data"]["datasets"]
    base = _leaves(base)
    repeated = [".".join(map(str, path)) for path, value in _leaves(overlay).items() if base.get(path, object()) == value]
    assert repeated == [], f"conf/profile/{profile}.yaml repeats the base's {repeated}"


def test_a_profile_is_composed_over_the_base_and_a_command_line_override_wins(tmp_path):
    params = write_params(["profile=agm", "student.epochs=7"], conf_dir=CONF, path=tmp_path / "params.yaml")
    assert (params.profile, params.student.epochs, params.student.lr) == ("agm", 7, 3.0e-4)  # lr: the base's
    assert set(params.data.datasets) == set(yaml.safe_load((CONF / "profile" / "agm.yaml").read_text())["data"]["datasets"])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda text: text.replace("  epochs: 2\n", "  epocs: 2\n"), r"conf/profile/agm.yaml: unknown key 'student.epocs'"),
        (lambda text: text.replace("  epochs: 2\n", "  epochs: two\n"), r"conf/profile/agm.yaml: student.epochs: "),
    ],
    ids=["misspelled", "mistyped"],
)
def test_a_bad_overlay_fails_naming_its_file_and_key_and_leaves_params_yaml_as_it_was(tmp_path, edit, expected):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    overlay = conf / "profile" / "agm.yaml"
    overlay.write_text(edit(overlay.read_text()))
    target = tmp_path / "params.yaml"
    target.write_text("untouched\n")
    with pytest.raises(ConfigError, match=expected.replace("conf/", f"{conf}/")) as info:
        write_params(["profile=agm"], conf_dir=conf, path=target)
    assert "\n" not in str(info.value)
    assert target.read_text() == "untouched\n" and sorted(p.name for p in tmp_path.iterdir()) == ["conf", "params.yaml"]


def test_an_unknown_profile_or_key_override_fails_in_one_line():
    with pytest.raises(ConfigError, match=r"profile=nope") as info:
        compose_params(["profile=nope"], conf_dir=CONF)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"student.epocs"):
        compose_params(["student.epocs=3"], conf_dir=CONF)


def test_a_mistyped_objective_setting_fails_at_load_naming_the_file_and_key():
    raw = _default()
    raw["student"]["settings"]["guided"]["betta"] = 1.0
    with pytest.raises(ConfigError, match=r"params.yaml: student.settings.guided: unknown setting 'betta'"):
        objective_from_params(parse_params(raw), "guided")


def test_dvc_exp_run_composes_params_yaml_from_conf_like_make_params(tmp_path):
    """DVC's Hydra integration (.dvc/config) composes the same params.yaml from the same overrides."""
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copytree(REPO / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "*.lock"))
    (tmp_path / "params.yaml").write_text(compose_params([], conf_dir=CONF))
    (tmp_path / "dvc.yaml").write_text(  # one stage reading two keys, so `dvc exp run` has something to run
        "stages:\n  echo:\n    cmd: python -c \"open('out.txt', 'w').write('ran')\"\n"
        "    params: [profile, student.epochs]\n    outs: [out.txt]\n"
    )
    (tmp_path / ".gitignore").write_text("out.txt\n")

    def run(*command: str) -> None:
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch")
    run(sys.executable, "-m", "dvc", "exp", "run", "-S", "profile=regex", "-S", "student.epochs=3")
    expected = write_params(["profile=regex", "student.epochs=3"], conf_dir=CONF, path=tmp_path / "expected.yaml")
    assert (tmp_path / "params.yaml").read_text() == (tmp_path / "expected.yaml").read_text()
    assert (expected.profile, expected.student.epochs) == ("regex", 3)
