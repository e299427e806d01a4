"""Tests for yolo_batch.core.spec: the batch value grammar, the plugin YAML, precedence and every user-facing error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yolo_batch.core.spec import (
    CONFIG_ENV,
    KEYS,
    AutoPlusError,
    BatchSpec,
    load_config,
    looks_like_auto_plus,
    parse_batch_value,
    resolve_spec,
    with_overrides,
)

SHIPPED_DEFAULTS = Path(__file__).parents[1] / "cfg" / "auto_plus.yaml"
FORMS = "valid: auto-plus, auto-plus:fit, auto-plus:speed, auto-plus:goodput, auto-plus:0.8, auto-plus:ladder:0.8"


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch):
    """No test may read the YAML of whoever runs the suite."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)


def write(tmp_path: Path, text: str, name: str = "auto_plus.yaml") -> Path:
    """Write a plugin YAML under tmp_path and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    """The message of a raised AutoPlusError, checked to be a single line fit to show a user as is."""
    message = str(err.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.strip() == message and message
    return message


# --------------------------------------------------------------------------------------------------------------------
# The batch value: auto-plus[:POLICY][:FRACTION]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("auto-plus", {}, id="bare"),
        pytest.param("AUTO-PLUS", {}, id="upper-case"),
        pytest.param("  auto-plus  ", {}, id="surrounding-spaces"),
        pytest.param("auto-plus:fit", {"policy": "fit"}, id="policy-fit"),
        pytest.param("auto-plus:ladder", {"policy": "ladder"}, id="policy-ladder"),
        pytest.param("Auto-Plus:FIT", {"policy": "fit"}, id="mixed-case-policy"),
        pytest.param("auto-plus:0.8", {"utilization": 0.8}, id="fraction"),
        pytest.param("auto-plus:.5", {"utilization": 0.5}, id="fraction-without-leading-zero"),
        pytest.param("auto-plus:fit:0.8", {"policy": "fit", "utilization": 0.8}, id="policy-and-fraction"),
        pytest.param("auto-plus:ladder:0.95", {"policy": "ladder", "utilization": 0.95}, id="ladder-and-fraction"),
        pytest.param("auto-plus: fit : 0.7", {"policy": "fit", "utilization": 0.7}, id="spaces-around-parts"),
    ],
)
def test_parse_batch_value_valid(value, expected):
    assert parse_batch_value(value) == expected


@pytest.mark.parametrize(
    ("value", "match", "hint"),
    [
        pytest.param("auto-plus:fitt", "unknown policy 'fitt'", "did you mean 'fit'?", id="misspelt-policy"),
        pytest.param("auto-plus:ladr", "unknown policy 'ladr'", "did you mean 'ladder'?", id="misspelt-ladder"),
        pytest.param("auto-plsu", "is not an auto-plus value", "did you mean 'auto-plus'?", id="misspelt-prefix"),
        pytest.param("autoplus:fit", "is not an auto-plus value", "did you mean 'auto-plus'?", id="missing-dash"),
        pytest.param("auto-plus:1.5", r"fraction 1\.5 must be in \(0, 1\)", None, id="fraction-above-one"),
        pytest.param("auto-plus:1", r"fraction 1 must be in \(0, 1\)", None, id="fraction-one"),
        pytest.param("auto-plus:0", r"fraction 0 must be in \(0, 1\)", None, id="fraction-zero"),
        pytest.param("auto-plus:-0.5", r"fraction -0\.5 must be in \(0, 1\)", None, id="fraction-negative"),
        pytest.param("auto-plus:nan", r"fraction nan must be in \(0, 1\)", None, id="fraction-nan"),
        pytest.param("auto-plus:0.8:fit", "the fraction comes last", None, id="fraction-before-policy"),
        pytest.param("auto-plus:0.8:0.7", "the fraction comes last", None, id="two-fractions"),
        pytest.param("auto-plus:fit:0.8:x", "too many ':' parts", None, id="three-parts"),
        pytest.param("auto-plus:ladder:fit", "names two policies", None, id="two-policies"),
        pytest.param("auto-plus:", "unknown policy ''", None, id="empty-part"),
        pytest.param("16", "is not an auto-plus value", None, id="a-number"),
    ],
)
def test_parse_batch_value_invalid(value, match, hint):
    with pytest.raises(AutoPlusError, match=match) as err:
        parse_batch_value(value)
    message = assert_one_line(err)
    assert repr(value) in message  # names the bad value as typed
    assert message.endswith(FORMS)  # and the valid forms
    if hint:
        assert hint in message


def test_second_policy_is_not_called_unknown():
    with pytest.raises(AutoPlusError) as err:
        parse_batch_value("auto-plus:ladder:fit")
    message = assert_one_line(err)
    assert "unknown policy 'fit'" not in message
    assert "did you mean 'fit'" not in message
    assert "names two policies" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("auto-plus", True, id="exact"),
        pytest.param("AUTO-PLUS:fit:0.8", True, id="upper-case-full"),
        pytest.param(" auto-plus ", True, id="spaces"),
        pytest.param("autoplus", True, id="missing-dash"),
        pytest.param("auto-plsu", True, id="transposed"),
        pytest.param("auto", True, id="auto-prefix"),
        pytest.param("", False, id="empty-string"),
        pytest.param("16", False, id="numeric-string"),
        pytest.param("fit", False, id="policy-alone"),
        pytest.param("ladder", False, id="ladder-alone"),
        pytest.param(16, False, id="int"),
        pytest.param(-1, False, id="ultralytics-autobatch-int"),
        pytest.param(0.8, False, id="ultralytics-fraction-float"),
        pytest.param(None, False, id="none"),
    ],
)
def test_looks_like_auto_plus(value, expected):
    assert looks_like_auto_plus(value) is expected


# --------------------------------------------------------------------------------------------------------------------
# The YAML: load_config / resolve_spec(config=...)


def test_shipped_defaults_file_matches_batchspec():
    assert SHIPPED_DEFAULTS.is_file(), f"{SHIPPED_DEFAULTS} is missing"
    loaded = load_config(SHIPPED_DEFAULTS)
    assert set(loaded) == set(KEYS)  # every setting is spelt out in the file, none left to the dataclass
    from_file = BatchSpec(**loaded)
    assert from_file == BatchSpec()
    assert from_file.as_dict() == BatchSpec().as_dict()
    assert resolve_spec(config=SHIPPED_DEFAULTS) == BatchSpec()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("\n\n", id="blank-lines"),
        pytest.param("# nothing set here\n# policy: fit\n", id="only-comments"),
        pytest.param("---\n", id="document-marker"),
    ],
)
def test_empty_config_gives_defaults(tmp_path, text):
    path = write(tmp_path, text)
    assert load_config(path) == {}
    spec = resolve_spec(config=path)
    assert spec == BatchSpec()
    assert spec.config == str(path)


def test_config_values_are_read_and_normalised(tmp_path):
    path = write(
        tmp_path,
        "policy: fit\nutilization: 0.75\ncandidates: [64, 8, 32, 8]\nmin_batch: 4\nmax_batch: 128\n"
        "probe:\n  batches: [8, 2, 4]\n  val: false\n  verify: false\n"
        "lr_scaling: sqrt\nnoise_scale: false\noom_retries: 0\n",
    )
    spec = resolve_spec(config=path)
    assert spec.policy == "fit"
    assert spec.utilization == 0.75
    assert spec.candidates == (8, 32, 64)  # sorted, duplicates dropped
    assert (spec.min_batch, spec.max_batch) == (4, 128)
    assert spec.probe_batches == (2, 4, 8)
    assert spec.probe_val is False and spec.verify is False
    assert spec.lr_scaling == "sqrt"
    assert spec.noise_scale is False
    assert spec.oom_retries == 0


def test_flat_probe_keys_are_accepted(tmp_path):
    path = write(tmp_path, "probe_batches: [4, 16]\nprobe_val: false\n")
    spec = resolve_spec(config=path)
    assert spec.probe_batches == (4, 16)
    assert spec.probe_val is False


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("policy: fit\nutilization: 0.8\nmin_batch: 2\nverify: @x\n", 4, id="bad-token-line-4"),
        pytest.param("policy: fit\nutilization: 0.8\n  bad: indent\n", 3, id="bad-indent-line-3"),
        pytest.param("policy: fit\n\tutilization: 0.8\n", 2, id="tab-line-2"),
    ],
)
def test_yaml_syntax_error_names_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError, match="YAML syntax error") as err:
        load_config(path)
    message = assert_one_line(err)
    assert str(path) in message
    assert f" line {line}:" in message


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        pytest.param("utilisation: 0.8\n", "'utilisation'", "utilization", id="british-spelling"),
        pytest.param("polcy: fit\n", "'polcy'", "policy", id="typo-policy"),
        pytest.param("candidate: [16]\n", "'candidate'", "candidates", id="singular-candidates"),
        pytest.param("max_bach: 64\n", "'max_bach'", "max_batch", id="typo-max-batch"),
        pytest.param("probe:\n  batchs: [2, 4]\n", "'probe.batchs'", "batches", id="nested-batchs"),
        pytest.param("probe:\n  verfy: true\n", "'probe.verfy'", "verify", id="nested-verfy"),
    ],
)
def test_unknown_key_names_key_and_closest(tmp_path, text, key, suggestion):
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError, match="unknown key") as err:
        resolve_spec(config=path)
    message = assert_one_line(err)
    assert key in message
    assert f"(did you mean '{suggestion}'?)" in message
    assert str(path) in message


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    path = write(tmp_path, "colour: blue\n")
    with pytest.raises(AutoPlusError, match="unknown key 'colour'") as err:
        load_config(path)
    message = assert_one_line(err)
    assert "did you mean" not in message
    assert all(k in message for k in KEYS)


def test_probe_that_is_not_a_mapping_is_not_called_unknown(tmp_path):
    path = write(tmp_path, "probe: [2, 4, 8]\n")
    with pytest.raises(AutoPlusError) as err:
        load_config(path)
    message = assert_one_line(err)
    assert "unknown key 'probe'" not in message
    assert "probe: [2, 4, 8]" in message and "must be a mapping" in message and str(path) in message
    assert message.endswith("e.g. probe: {batches: [2, 4, 8], val: true, verify: true, cache: true}")  # no stray }
    assert message.count("{") == message.count("}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "probe:\n  cache: maybe\n",
            "probe: {cache: 'maybe'} in {path} is invalid; cache must be true or false",
            id="cache",
        ),
        pytest.param(
            "probe:\n  verify: 'yes'\n",
            "probe: {verify: 'yes'} in {path} is invalid; verify must be auto, true or false",
            id="verify",
        ),
        pytest.param("probe:\n  val: 1\n", "probe: {val: 1} in {path} is invalid; val must be true or false", id="val"),
        pytest.param(
            "probe:\n  batches: [4, 4]\n",
            "probe: {batches: [4, 4]} in {path} is invalid; batches must be at least two different batch sizes, "
            "e.g. [2, 4, 8]",
            id="batches",
        ),
        pytest.param(
            "probe_cache: maybe\n",
            "probe_cache='maybe' in {path} is invalid; probe_cache must be true or false",
            id="flat key: named as written",
        ),
    ],
)
def test_errors_name_the_yaml_keys_as_written(tmp_path, text, message):
    """issue 21: ``probe: {cache: maybe}`` was refused as ``probe_cache='maybe'``, a name the YAML never held."""
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError) as err:
        resolve_spec(config=path)
    assert assert_one_line(err) == message.replace("{path}", str(path))


@pytest.mark.parametrize(
    ("text", "key", "must_be"),
    [
        pytest.param('utilization: "high"\n', "utilization='high'", "a fraction in (0, 1)", id="utilization-string"),
        pytest.param("utilization: true\n", "utilization=True", "a fraction in (0, 1)", id="utilization-bool"),
        pytest.param("candidates: 16\n", "candidates=16", "a list of positive integers", id="candidates-int"),
        pytest.param('candidates: "16,32"\n', "candidates='16,32'", "a list of positive integers", id="cand-string"),
        pytest.param("candidates: []\n", "candidates=", "a non-empty list", id="candidates-empty"),
        pytest.param("candidates: [16, -1]\n", "candidates=", "a list of positive integers", id="candidates-negative"),
        pytest.param("candidates: [16, 32.0]\n", "candidates=", "a list of positive integers", id="candidates-float"),
        pytest.param("policy: 3\n", "policy=3", "valid: ladder, fit", id="policy-int"),
        pytest.param("policy: greedy\n", "policy='greedy'", "valid: ladder, fit", id="policy-unknown"),
        pytest.param('verify: "yes"\n', "verify='yes'", "true or false", id="verify-quoted-yes"),
        pytest.param("probe:\n  val: 1\n", "probe: {val: 1}", "true or false", id="probe-val-int"),
        pytest.param("min_batch: 2.5\n", "min_batch=2.5", "an integer >= 1", id="min-batch-float"),
        pytest.param("max_batch: true\n", "max_batch=True", "an integer >= 1", id="max-batch-bool"),
        pytest.param("lr_scaling: log\n", "lr_scaling='log'", "valid: none, linear, sqrt", id="lr-scaling"),
        pytest.param("probe:\n  batches: [4, 4]\n", "probe: {batches: ", "at least two different", id="probe-one-size"),
        pytest.param("policy: fastest\n", "policy='fastest'", "valid: ladder, fit, speed", id="policy-near-speed"),
        pytest.param("speed_threshold: fast\n", "speed_threshold='fast'", "a fraction in (0, 1]", id="threshold-str"),
        pytest.param("speed_threshold: true\n", "speed_threshold=True", "a fraction in (0, 1]", id="threshold-bool"),
        pytest.param("speed_threshold: 0\n", "speed_threshold=0", "a fraction in (0, 1]", id="threshold-0"),
        pytest.param("speed_threshold: 1.5\n", "speed_threshold=1.5", "a fraction in (0, 1]", id="threshold-1.5"),
        pytest.param("speed_gain: -0.1\n", "speed_gain=-0.1", "a fraction >= 0, e.g. 0.10", id="speed-gain-negative"),
        pytest.param("speed_gain: fast\n", "speed_gain='fast'", "a fraction >= 0", id="speed-gain-str"),
        pytest.param("speed_gain: .nan\n", "speed_gain=nan", "a fraction >= 0", id="speed-gain-nan"),
        pytest.param("bn_momentum: scale\n", "bn_momentum='scale'", "valid: keep, auto", id="bn-momentum"),
        pytest.param("bn_momentum: true\n", "bn_momentum=True", "valid: keep, auto", id="bn-momentum-bool"),
    ],
)
def test_wrong_type_names_key_value_file_and_valid(tmp_path, text, key, must_be):
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError) as err:
        resolve_spec(config=path)
    message = assert_one_line(err)
    assert message.startswith(key)
    assert must_be in message
    assert f" in {path}" in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("utilization: 1.2\n", r"utilization=1\.2 in .* must be a fraction in \(0, 1\)", id="util-1.2"),
        pytest.param("utilization: 1\n", r"utilization=1 in .* must be a fraction in \(0, 1\)", id="util-1"),
        pytest.param("utilization: 0\n", r"utilization=0 in .* must be a fraction in \(0, 1\)", id="util-0"),
        pytest.param("min_batch: 0\n", r"min_batch=0 in .* must be an integer >= 1", id="min-batch-0"),
        pytest.param("max_batch: -4\n", r"max_batch=-4 in .* must be an integer >= 1", id="max-batch-negative"),
        pytest.param("oom_retries: -1\n", r"oom_retries=-1 in .* must be an integer >= 0", id="oom-retries-negative"),
        pytest.param("min_batch: 64\nmax_batch: 32\n", r"min_batch=64 is above max_batch=32 in ", id="min-above-max"),
        pytest.param("min_batch: 600\n", r"min_batch=600 is above max_batch=512 in ", id="min-above-default-max"),
    ],
)
def test_out_of_range(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError, match=match) as err:
        resolve_spec(config=path)
    assert str(path) in assert_one_line(err)


def test_min_batch_equal_to_max_batch_is_allowed(tmp_path):
    spec = resolve_spec(config=write(tmp_path, "min_batch: 32\nmax_batch: 32\n"))
    assert spec.min_batch == spec.max_batch == 32


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(AutoPlusError, match="not found") as err:
        resolve_spec(config=missing)
    message = assert_one_line(err)
    assert repr(str(missing)) in message
    assert CONFIG_ENV in message  # says where the path may have come from


def test_directory_is_not_a_config(tmp_path, monkeypatch):
    with pytest.raises(AutoPlusError, match="is a folder; YOLO_BATCH_CONFIG and config= name a YAML file") as err:
        load_config(tmp_path)
    assert repr(str(tmp_path)) in assert_one_line(err)
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))
    with pytest.raises(AutoPlusError, match="is a folder"):
        resolve_spec("auto-plus")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("- policy\n- fit\n", "list", id="list"),
        pytest.param("fit\n", "str", id="scalar"),
    ],
)
def test_config_must_be_a_mapping(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(AutoPlusError, match="must hold a mapping") as err:
        load_config(path)
    message = assert_one_line(err)
    assert str(path) in message and message.endswith(kind)


def test_undecodable_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("policy: f\xeft\n".encode("latin-1"))
    with pytest.raises(AutoPlusError, match="cannot be read") as err:
        load_config(path)
    assert str(path) in assert_one_line(err)


# --------------------------------------------------------------------------------------------------------------------
# Precedence: batch value > Python keywords > user YAML > defaults

LAYERS = {  # every layer sets a different value; policy has only two values, so it alternates
    "yaml": {"policy": "fit", "utilization": 0.7},
    "keywords": {"policy": "ladder", "utilization": 0.6},
    "value": {"policy": "fit", "utilization": 0.5},
}


@pytest.mark.parametrize(
    ("present", "winner"),
    [
        pytest.param((), None, id="defaults-only"),
        pytest.param(("yaml",), "yaml", id="yaml-over-defaults"),
        pytest.param(("keywords",), "keywords", id="keywords-over-defaults"),
        pytest.param(("value",), "value", id="value-over-defaults"),
        pytest.param(("yaml", "keywords"), "keywords", id="keywords-over-yaml"),
        pytest.param(("yaml", "value"), "value", id="value-over-yaml"),
        pytest.param(("keywords", "value"), "value", id="value-over-keywords"),
        pytest.param(("yaml", "keywords", "value"), "value", id="all-four-layers"),
    ],
)
def test_precedence(tmp_path, present, winner):
    config = write(tmp_path, "policy: fit\nutilization: 0.7\n") if "yaml" in present else None
    keywords = dict(LAYERS["keywords"]) if "keywords" in present else None
    value = "auto-plus:fit:0.5" if "value" in present else None
    spec = resolve_spec(value, keywords, config=config)
    expected = LAYERS[winner] if winner else {"policy": BatchSpec().policy, "utilization": BatchSpec().utilization}
    assert (spec.policy, spec.utilization) == (expected["policy"], expected["utilization"])


def test_precedence_is_per_setting(tmp_path):
    """A layer overrides only what it sets: the rest falls through to the layer below."""
    config = write(tmp_path, "policy: fit\nutilization: 0.7\nmax_batch: 96\n")
    spec = resolve_spec("auto-plus:0.5", {"min_batch": 4, "utilization": 0.6}, config=config)
    assert spec.utilization == 0.5  # batch value
    assert spec.min_batch == 4  # keywords
    assert spec.policy == "fit" and spec.max_batch == 96  # YAML
    assert spec.candidates == BatchSpec().candidates  # defaults


def test_bare_batch_value_keeps_lower_layers(tmp_path):
    spec = resolve_spec("auto-plus", {"policy": "fit"}, config=write(tmp_path, "utilization: 0.7\n"))
    assert (spec.policy, spec.utilization) == ("fit", 0.7)


def test_nested_probe_keyword(tmp_path):
    config = write(tmp_path, "probe:\n  batches: [2, 4]\n  val: true\n")
    spec = resolve_spec(keywords={"probe": {"batches": [8, 16], "val": False}}, config=config)
    assert spec.probe_batches == (8, 16) and spec.probe_val is False


def test_unknown_keyword_names_the_keywords(tmp_path):
    with pytest.raises(AutoPlusError, match="unknown key 'utilisation' in AutoPlus") as err:
        resolve_spec(keywords={"utilisation": 0.5})
    assert "(did you mean 'utilization'?)" in assert_one_line(err)


def test_bad_batch_value_wins_over_good_layers(tmp_path):
    with pytest.raises(AutoPlusError, match="unknown policy 'fitt'"):
        resolve_spec("auto-plus:fitt", {"policy": "fit"}, config=write(tmp_path, "policy: ladder\n"))


def test_env_config_is_read(tmp_path, monkeypatch):
    path = write(tmp_path, "policy: fit\nutilization: 0.65\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    spec = resolve_spec()
    assert (spec.policy, spec.utilization) == ("fit", 0.65)
    assert spec.config == str(path)


def test_explicit_config_wins_over_env(tmp_path, monkeypatch):
    from_env = write(tmp_path, "policy: fit\nutilization: 0.65\n", name="env.yaml")
    explicit = write(tmp_path, "utilization: 0.55\n", name="explicit.yaml")
    monkeypatch.setenv(CONFIG_ENV, str(from_env))
    spec = resolve_spec(config=explicit)
    assert spec.utilization == 0.55
    assert spec.policy == BatchSpec().policy  # nothing leaks in from the env file
    assert spec.config == str(explicit)


def test_env_and_keywords_and_value_layer(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, "policy: fit\nutilization: 0.7\nmin_batch: 2\n")))
    spec = resolve_spec("auto-plus:0.5", {"policy": "ladder"})
    assert (spec.policy, spec.utilization, spec.min_batch) == ("ladder", 0.5, 2)


def test_empty_env_is_ignored(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")
    spec = resolve_spec()
    assert spec == BatchSpec() and spec.config is None


def test_env_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    with pytest.raises(AutoPlusError, match="gone.yaml' not found") as err:
        resolve_spec()
    assert CONFIG_ENV in assert_one_line(err)


def test_no_config_anywhere():
    spec = resolve_spec()
    assert spec == BatchSpec() and spec.config is None


# --------------------------------------------------------------------------------------------------------------------
# BatchSpec itself


def test_batchspec_is_frozen():
    spec = BatchSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.policy = "fit"
    assert spec.policy == "ladder"


def test_as_dict_uses_plain_types():
    d = BatchSpec(candidates=(32, 16)).as_dict()
    assert d["candidates"] == [16, 32] and isinstance(d["candidates"], list)
    assert isinstance(d["probe_batches"], list)
    assert set(d) == set(KEYS) | {"config"}


def test_config_does_not_take_part_in_equality(tmp_path):
    assert resolve_spec(config=write(tmp_path, "")) == BatchSpec()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"utilization": 2}, "utilization=2 is invalid", id="utilization"),
        pytest.param({"policy": "fitt"}, r"policy='fitt' is not a policy.*did you mean 'fit'", id="policy"),
        pytest.param({"min_batch": 1024}, "min_batch=1024 is above max_batch=512", id="min-above-max"),
        pytest.param({"lr_scaling": "sqrtt"}, "did you mean 'sqrt'", id="lr-scaling"),
    ],
)
def test_with_overrides_validates(changes, match):
    spec = BatchSpec()
    with pytest.raises(AutoPlusError, match=match) as err:
        with_overrides(spec, **changes)
    assert_one_line(err)
    assert spec == BatchSpec()  # the original is untouched


def test_with_overrides_returns_new_spec():
    spec = with_overrides(BatchSpec(), policy="fit", candidates=[64, 32])
    assert (spec.policy, spec.candidates) == ("fit", (32, 64))
    assert BatchSpec().policy == "ladder"


@pytest.mark.parametrize(
    ("value", "keywords", "text", "expected"),
    [
        pytest.param("auto-plus:speed", None, "", ("speed", 0.97), id="batch-value"),
        pytest.param(None, {"policy": "speed", "speed_threshold": 0.9}, "", ("speed", 0.9), id="python-keywords"),
        pytest.param(None, None, "policy: speed\nspeed_threshold: 1\n", ("speed", 1.0), id="yaml"),
        pytest.param("auto-plus:speed:0.8", None, "speed_threshold: 0.95\n", ("speed", 0.95), id="value-and-yaml"),
    ],
)
def test_speed_policy_through_every_way_in(tmp_path, value, keywords, text, expected):
    spec = resolve_spec(value, keywords, write(tmp_path, text))
    assert (spec.policy, spec.speed_threshold) == expected
    assert isinstance(spec.speed_threshold, float)


def test_bn_momentum_defaults_to_keep_and_takes_auto(tmp_path):
    assert BatchSpec().bn_momentum == "keep"
    assert resolve_spec(None, {"bn_momentum": "auto"}).bn_momentum == "auto"
    assert resolve_spec(config=write(tmp_path, "bn_momentum: auto\n")).bn_momentum == "auto"
    with pytest.raises(
        AutoPlusError, match=r"bn_momentum='Auto' is invalid; valid: keep, auto \(did you mean 'auto'\?\)"
    ):
        resolve_spec(None, {"bn_momentum": "Auto"})


@pytest.mark.parametrize("where", ["yaml", "keyword"])
def test_val_batch_is_pointed_to_where_it_is_set(tmp_path, where):
    """val_batch is no plugin setting: the error says where it is set, instead of "did you mean 'max_batch'"."""
    with pytest.raises(AutoPlusError) as err:
        if where == "yaml":
            resolve_spec(config=write(tmp_path, "val_batch: 32\n"))
        else:
            resolve_spec(keywords={"val_batch": 32})
    message = assert_one_line(err)
    assert "'val_batch'" in message and "is not a plugin setting: the validation batch is set with" in message
    assert "`yolo-batch sweep ... val_batch=N`" in message and "YOLO_BATCH_VAL_BATCH=N" in message
    assert "did you mean" not in message
