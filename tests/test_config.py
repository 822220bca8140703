"""The config object: presets, TOML files, --set overrides and their validation."""

import pytest

from mnist_classifier.config import Config, apply_overrides, known_settings, parse_assignment, write_config
from mnist_classifier.presets import PRESETS, resolve_config
from mnist_classifier.errors import ConfigError


def test_notebook_preset_is_the_notebook():
    config = PRESETS["notebook"]
    assert config.data.normalize == "l2" and config.data.validation == "test"
    assert config.model.layers == (128, 64, 10)
    assert config.model.activations == ("relu", "relu", "softmax")
    assert (config.model.lambtha, config.model.keep_prob) == (0.01, 0.8)
    assert (config.optimizer.alpha, config.optimizer.beta1, config.optimizer.beta2) == (0.001, 0.9, 0.999)
    training = config.training
    assert (training.batch_size, training.epochs, training.patience) == (32, 5, 3)
    assert training.early_stopping and training.save_best and not training.shuffle
    assert training.schedule == "constant"


def test_default_preset_is_mlp_with_holdout_validation():
    config = resolve_config()
    assert config.preset == "mlp" and config.data.validation == "holdout"


def test_file_then_overrides_are_applied_in_order(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "notebook"\n[training]\nepochs = 7\nbatch_size = 64\n[model]\nlayers = [20, 10]\nactivations = ["relu", "softmax"]\n')
    config = resolve_config(None, path, {"training.epochs": 9, "optimizer.alpha": 1})
    assert config.preset == "notebook" and config.data.normalize == "l2"
    assert config.training.epochs == 9 and config.training.batch_size == 64
    assert config.model.layers == (20, 10)
    assert config.optimizer.alpha == 1.0 and isinstance(config.optimizer.alpha, float)


def test_written_config_reads_back_identical(tmp_path):
    original = apply_overrides(PRESETS["mlp"], {"data.train_limit": 6000, "training.seed": 3})
    write_config(original, tmp_path / "config.toml")
    assert resolve_config(config_file=tmp_path / "config.toml") == original


@pytest.mark.parametrize(
    ("base", "overrides"),
    [
        ("mlp", {"training.seed": 3}),
        ("notebook", {"model.layers": [32, 10], "model.activations": ["relu", "softmax"]}),
        ("cnn", {"model.architecture": "mlp"}),  # read back onto the cnn preset, which gives them
        ("mlp", {"model.kernel_size": 5}),  # set by hand on an MLP: kept
        ("cnn", {}),
    ],
)
def test_an_mlps_config_file_lists_only_what_it_uses_and_reads_back_identical(tmp_path, base, overrides):
    original = apply_overrides(PRESETS[base], overrides)
    write_config(original, tmp_path / "config.toml", PRESETS[base])
    text = (tmp_path / "config.toml").read_text()
    assert resolve_config(config_file=tmp_path / "config.toml") == original
    if original.model.architecture == "mlp":
        assert "filters" not in text and "augment" not in text and "rotation" not in text
        assert ("kernel_size" in text) == ("model.kernel_size" in overrides)
    else:
        assert "filters" in text and "convs_per_block" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("training.epochs=3", ("training.epochs", 3)),
        ("model.layers=[64, 10]", ("model.layers", [64, 10])),
        ("data.dataset=fashion_mnist", ("data.dataset", "fashion_mnist")),
        ("training.shuffle=false", ("training.shuffle", False)),
        ("optimizer.alpha=1e-3", ("optimizer.alpha", 0.001)),
        ("model.activations=[relu,relu, softmax]", ("model.activations", ["relu", "relu", "softmax"])),
        ("model.layers=[256,128,10]", ("model.layers", [256, 128, 10])),
    ],
)
def test_set_values_parse_as_toml_or_bare_strings(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training.epochz": 3}, "unknown setting 'training.epochz'"),
        ({"nosection.zzz": 3}, "unknown setting 'nosection.zzz': expected one of data.dataset"),
        ({"training.epochs": 0}, "training.epochs=0: expected a value > 0"),
        ({"training.epochs": "ten"}, "training.epochs='ten': expected int"),
        ({"training.epochs": True}, "expected int"),
        ({"training.batch_size": -1}, "training.batch_size=-1"),
        ({"model.keep_prob": 2.0}, "keep_prob=2.0"),
        ({"model.layers": 5}, "expected a list"),
        ({"data.normalize": "minmax"}, "normalize='minmax': expected one of scale, l2, standardize"),
        ({"data.dataset": "cifar"}, "data.dataset='cifar': expected one of mnist, fashion_mnist"),
        ({"data.validation": "train"}, "data.validation='train'"),
        ({"training.schedule": "cosin"}, "training.schedule='cosin'"),
        ({"training.label_smoothing": 1.0}, "training.label_smoothing=1.0: expected 0 <= value < 1"),
        ({"optimizer.beta1": 1.0}, "optimizer.beta1=1.0"),
        ({"optimizer.alpha": float("nan")}, "optimizer.alpha=nan: expected a finite number"),
        ({"model.lambtha": float("inf")}, "model.lambtha=inf: expected a finite number"),
        ({"model.layers": [64, 32, 5]}, "model.layers ends in 5 softmax units: expected 10 softmax units"),
        ({"model.activations": ["relu", "relu", "relu"]}, "ends in 10 relu units"),
        ({"data.validation": "none"}, "training.save_best needs validation data"),
        ({"data.train_limit": 4000}, "data.validation_size=5000 leaves no training images"),
        ({"model.architecture": "rnn"}, "model.architecture='rnn': expected one of mlp, cnn"),
        ({"model.precision": "float16"}, "model.precision='float16': expected one of float32, mixed_bfloat16"),
        ({"model.kernel_size": 4}, "kernel_size=4"),
        ({"model.kernel_size": 29}, "kernel_size=29: expected a positive odd integer below 28"),
        ({"training.seed": 2**32}, r"training.seed=4294967296: expected 0 <= seed < 2\*\*32"),
        ({"training.seed": -1}, "training.seed=-1"),
        ({"model.rotation": 400.0}, "model.rotation=400.0"),
    ],
)
def test_bad_settings_name_the_setting_and_what_was_expected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides)


def test_bad_assignment_syntax_is_refused():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_assignment("epochs")


def test_cnn_small_preset_is_cnn_at_half_width_on_fasts_schedule():
    small, cnn, fast = (resolve_config(name) for name in ("cnn-small", "cnn", "fast"))
    assert small.model.filters == tuple(f // 2 for f in cnn.model.filters) and small.model.convs_per_block == 2
    assert small.model.batch_norm and small.model.keep_prob == 0.5 and small.training.epochs == 4
    assert (small.training.schedule, small.training.label_smoothing) == (fast.training.schedule, fast.training.label_smoothing)
    assert small.optimizer.alpha == cnn.optimizer.alpha and small.data.validation == "holdout"


def test_fast_preset_is_one_epoch_of_a_small_cnn_with_a_holdout():
    config = resolve_config("fast")
    assert (config.model.architecture, config.model.filters, config.training.epochs) == ("cnn", (16, 32), 1)
    assert config.training.schedule == "one_cycle" and config.data.validation == "holdout"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'big'.*notebook, mlp"):
        resolve_config("big")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[training\nepochs=1", "invalid TOML"),
        ("[trainer]\nepochs = 1\n", r"unknown section \[trainer\]"),
        ("[[data]]\ndataset = 'mnist'\n", "data must be a table"),
        ("data = 5\n", "data must be a table"),
        ('preset = ["mlp"]\n', "expected a preset name"),
        (b"\xff\xfe[data]", "invalid TOML"),
    ],
)
def test_bad_config_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=f"bad.toml.*{message}|{message}"):
        resolve_config(config_file=path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        resolve_config(config_file=tmp_path / "nope.toml")


def test_a_misspelt_setting_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean training.epochs"):
        apply_overrides(Config(), {"training.epochz": 3})


def test_every_known_setting_is_settable():
    assert "training.epochs" in known_settings() and "model.lambtha" in known_settings()


def test_the_largest_seed_is_accepted():
    assert apply_overrides(Config(), {"training.seed": 2**32 - 1}).training.seed == 2**32 - 1


def test_an_oversized_config_file_is_refused(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="big.toml: 2,000,000 bytes is over the 1,048,576-byte limit"):
        resolve_config(config_file=path)


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a = " * 5000 + "1" + "}" * 5000, "[" * 17 + "]" * 17])
def test_deep_nesting_is_one_config_error(tmp_path, value):
    path = tmp_path / "deep.toml"
    path.write_text(f"[model]\nlayers = {value}\n")
    with pytest.raises(ConfigError, match="^.*deep.toml: tables or lists nested more than 16 deep$"):
        resolve_config(config_file=path)
    with pytest.raises(ConfigError, match="^--set model.layers: (tables or )?lists nested more than 16 deep$"):
        parse_assignment(f"model.layers={value}")


def test_bare_strings_in_lists_still_parse_at_the_depth_allowed():
    assert parse_assignment("model.activations=[[relu], [softmax]]") == ("model.activations", [["relu"], ["softmax"]])
