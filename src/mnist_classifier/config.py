"""One config object for data, model, optimizer and training; presets; TOML in and out."""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from mnist_classifier.errors import ConfigError, closest
from mnist_classifier.system.files import read_input, write_text_atomic
from mnist_classifier.data.formats import IMAGE_SIZE
from mnist_classifier.data.preprocessing import check_normalize_mode

VALIDATION_MODES = ("holdout", "test", "none")
SCHEDULES = ("constant", "inverse_time", "cosine", "one_cycle")
ENGINES = ("auto", "keras")
DISTRIBUTIONS = ("none", "data-parallel")
ARCHITECTURES = ("mlp", "cnn")
# Keras dtype policies: mixed_bfloat16 keeps the weights in float32 and computes in bfloat16
PRECISIONS = ("float32", "mixed_bfloat16")
MAX_CONFIG_BYTES = 2**20  # a config file is a few hundred bytes
MAX_NESTING = 16  # tables and lists in a config (tune.space nests 3 deep)


@dataclass(frozen=True)
class DataConfig:
    """Which data, where from, and how it is prepared."""

    dataset: str = "mnist"
    path: str | None = None
    normalize: str = "scale"
    validation: str = "holdout"  # holdout from train, "test" (the notebook's way), or "none"
    validation_size: int = 5000
    train_limit: int | None = None  # use only the first N training images (quick runs)
    test_limit: int | None = None
    # non-digit pictures (mnist only) added to the training images with uniform targets (outlier exposure)
    outliers: int = 0
    # two training digits side by side framed as one (two touching digits cut as one), uniform targets too
    pairs: int = 0
    # 1s with a flag (a third with a foot too) drawn on the training split's own 1s (mnist only), labelled 1
    flagged_ones: int = 0
    # training digits shown at 6-14 px and enlarged again, as the reader reads them (mnist only), labelled
    low_resolution: int = 0
    # a Keras-layout .npz of more labelled images (x_train, y_train), added to the training split only;
    # its x_outliers, if any, are trained towards the uniform distribution as the outliers are
    extra: str | None = None

    def __post_init__(self) -> None:
        from mnist_classifier.data.sources import DATASETS

        check_choice("data.dataset", self.dataset, tuple(DATASETS))
        check_normalize_mode(self.normalize, "data.normalize")
        check_choice("data.validation", self.validation, VALIDATION_MODES)
        _check_positive("data.validation_size", self.validation_size)
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                _check_positive(f"data.{name}", getattr(self, name))
        for name, what in (
            ("outliers", "non-digit pictures"), ("pairs", "pairs of digits"), ("flagged_ones", "flagged 1s"),
            ("low_resolution", "low-resolution digits"),
        ):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"data.{name}={value}: expected >= 0")
            if value and self.dataset != "mnist":
                raise ConfigError(f"data.{name}={value} on {self.dataset}: {what} are made for mnist only")
        limit = self.train_limit
        if self.validation == "holdout" and limit is not None and self.validation_size >= limit:
            raise ConfigError(
                f"data.validation_size={self.validation_size} leaves no training images of "
                f"data.train_limit={limit}: expected validation_size < train_limit"
            )


@dataclass(frozen=True)
class ModelConfig:
    """The network: the notebook's ``build_model`` arguments, or a CNN with that MLP as its head.

    For a CNN, ``layers``/``activations``/``keep_prob`` describe the dense head that
    follows the convolutional blocks, and ``lambtha`` applies to every kernel.
    """

    layers: tuple[int, ...] = (128, 64, 10)
    activations: tuple[str, ...] = ("relu", "relu", "softmax")
    lambtha: float = 0.01
    keep_prob: float = 0.8
    input_keep_prob: float = 1.0  # dropout on the pixels (mlp); 1 = none, as in the notebook
    architecture: str = "mlp"  # or "cnn"; the fields below are the CNN's
    filters: tuple[int, ...] = (32, 64, 128)  # cnn: one block per entry, each ending in 2×2 max-pooling
    convs_per_block: int = 1
    kernel_size: int = 3
    batch_norm: bool = True
    conv_keep_prob: float = 1.0  # dropout after each conv block
    augment: bool = False  # the random image changes below, active in training only (0 turns one off)
    shift: float = 0.1  # fraction of the image size
    rotation: float = 10.0  # degrees
    zoom: float = 0.1  # fraction
    pen_width: float = 0.0  # share of a 3×3 dilation (erosion: half as far), up to 1
    elastic: float = 0.0  # elastic distortion: displacement's standard deviation, pixels
    blur: float = 0.0  # largest Gaussian blur sigma, pixels (half the images)
    contrast: float = 0.0  # contrast change, fraction
    precision: str = "float32"  # or mixed_bfloat16 (faster where the hardware multiplies bfloat16)

    def __post_init__(self) -> None:
        check_choice("model.architecture", self.architecture, ARCHITECTURES)
        check_choice("model.precision", self.precision, PRECISIONS)
        check_layers(self.layers, self.activations, self.lambtha, self.keep_prob)
        check_keep_prob("model.input_keep_prob", self.input_keep_prob)
        check_conv_blocks(self.filters, self.convs_per_block, self.kernel_size, self.conv_keep_prob)
        limits = (("shift", 0.5), ("rotation", 180.0), ("zoom", 0.9), ("pen_width", 1.0), ("elastic", 5.0), ("blur", 3.0), ("contrast", 0.9))
        for name, top in limits:
            if not 0 <= getattr(self, name) <= top:
                raise ConfigError(f"model.{name}={getattr(self, name)}: expected 0 <= {name} <= {top}")


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam's settings, named as in the notebook's ``optimize_model``."""

    alpha: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999

    def __post_init__(self) -> None:
        _check_positive("optimizer.alpha", self.alpha)
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optimizer.{name}={getattr(self, name)}: expected 0 <= value < 1")


@dataclass(frozen=True)
class TrainingConfig:
    """Mini-batch training: the notebook's ``train_model`` knobs plus the seed."""

    batch_size: int = 32
    epochs: int = 5
    shuffle: bool = True
    early_stopping: bool = False
    patience: int = 0
    # constant | inverse_time (per epoch: alpha / (1 + decay_rate * epoch)) | cosine
    # (per step, alpha down to 0) | one_cycle (per step: warm-up to alpha, then cosine to 0)
    schedule: str = "constant"
    decay_rate: float = 1.0
    # share of each one-hot target spread evenly over the classes (keras's label_smoothing)
    label_smoothing: float = 0.0
    save_best: bool = True
    restore_best: bool = False
    seed: int = 0
    # auto: whole-epoch compiled scans on JAX (same arithmetic as fit, faster); keras: model.fit
    engine: str = "auto"
    # none, or data-parallel: each batch split over all local devices (GPUs, or the CPU's cores)
    distribute: str = "none"
    # start from this model's weights (a bundled model's name or a .keras file) instead of random ones
    init_from: str | None = None
    # share of each weight taken back from the init_from model once training ends: a weight-space
    # average of the fine-tune and its base (Wortsman et al. 2022), clean accuracy of one, robustness of the other
    base_share: float = 0.0
    # share of the validation digits the "not a digit" threshold may reject
    reject_share: float = 0.005

    def __post_init__(self) -> None:
        _check_positive("training.batch_size", self.batch_size)
        _check_positive("training.epochs", self.epochs)
        if self.patience < 0:
            raise ConfigError(f"training.patience={self.patience}: expected >= 0")
        check_choice("training.schedule", self.schedule, SCHEDULES)
        check_choice("training.engine", self.engine, ENGINES)
        check_choice("training.distribute", self.distribute, DISTRIBUTIONS)
        if self.decay_rate < 0:
            raise ConfigError(f"training.decay_rate={self.decay_rate}: expected >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"training.label_smoothing={self.label_smoothing}: expected 0 <= value < 1")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"training.seed={self.seed}: expected 0 <= seed < 2**32 (4294967296)")
        if self.init_from is not None and not self.init_from.strip():
            raise ConfigError("training.init_from='': expected a bundled model's name or a .keras file")
        if not 0 <= self.base_share < 1:
            raise ConfigError(f"training.base_share={self.base_share}: expected 0 <= value < 1")
        if self.base_share and self.init_from is None:
            raise ConfigError(f"training.base_share={self.base_share}: needs training.init_from, the model to average with")
        if not 0 <= self.reject_share < 0.5:
            raise ConfigError(f"training.reject_share={self.reject_share}: expected 0 <= value < 0.5")


# The notebook's hand-chosen knobs; model.layers can join as choices of whole lists.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "optimizer.alpha": {"low": 1e-4, "high": 1e-2, "log": True},
    "optimizer.beta1": {"low": 0.8, "high": 0.99},
    "optimizer.beta2": {"low": 0.99, "high": 0.9999},
    "model.keep_prob": {"low": 0.4, "high": 1.0},
    "model.lambtha": {"low": 1e-6, "high": 1e-2, "log": True},
    "training.batch_size": {"choices": [32, 64, 128, 256]},
    "training.decay_rate": {"low": 0.0, "high": 1.0},
}
SEARCHABLE = ("model", "optimizer", "training")


@dataclass(frozen=True)
class TuneConfig:
    """What ``tune`` searches: per setting, a range ``{low, high[, log][, step]}`` or ``{choices = [...]}``."""

    space: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SPACE))

    def __post_init__(self) -> None:
        if not self.space:
            raise ConfigError("tune.space is empty: expected at least one setting to search")
        for name, spec in self.space.items():
            check_search_range(name, spec)


def check_search_range(name: str, spec: Any) -> None:
    """One entry of ``tune.space``: a searchable setting and a valid range or list of choices for it."""
    section, _, key = name.partition(".")
    if section not in SEARCHABLE or key not in _field_types(_SECTIONS[section]):
        choices = [setting for setting in known_settings() if setting.split(".")[0] in SEARCHABLE]
        close = closest(name, choices)
        hint = f"did you mean {close}?" if close else "expected a model, optimizer or training setting"
        raise ConfigError(f"tune.space: cannot search {name!r}: {hint}")
    hint = _field_types(_SECTIONS[section])[key]
    where = f"tune.space.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}={spec!r}: expected {{low = ..., high = ...}} or {{choices = [...]}}")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}={spec!r}: expected only choices = [a non-empty list]")
        for choice in spec["choices"]:
            _coerce(where, choice, hint)
        return
    if not {"low", "high"} <= set(spec) <= {"low", "high", "log", "step"}:
        raise ConfigError(f"{where}={spec!r}: expected low and high (optionally log = true or step)")
    low, high = (_coerce(where, spec[bound], hint) for bound in ("low", "high"))
    if not isinstance(low, (int, float)) or isinstance(low, bool):
        raise ConfigError(f"{where}: a {hint.__name__} setting is searched with choices = [...], not a range")
    if not low < high:
        raise ConfigError(f"{where}: low={low} must be below high={high}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}: step={step!r}: expected a positive number")


@dataclass(frozen=True)
class Config:
    """Every setting of a run; ``preset`` names what it started from."""

    preset: str = "mlp"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        from mnist_classifier.data.sources import DATASETS

        classes = len(DATASETS[self.data.dataset].classes)
        if self.model.layers[-1] != classes or self.model.activations[-1] != "softmax":
            raise ConfigError(
                f"model.layers ends in {self.model.layers[-1]} {self.model.activations[-1]} units: "
                f"expected {classes} softmax units, one per {self.data.dataset} class"
            )
        if self.data.validation == "none":
            for name in ("early_stopping", "save_best", "restore_best"):
                if getattr(self.training, name):
                    raise ConfigError(
                        f"training.{name} needs validation data, but data.validation is none: "
                        f"set training.{name}=false or data.validation=holdout"
                    )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples, no None values): TOML- and JSON-ready."""
        return _strip_none(dataclasses.asdict(self))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML config file, or a ConfigError naming the file.

    Only a regular file of at most MAX_CONFIG_BYTES is read (a FIFO or a device is
    refused unread), and tables or lists nested deeper than MAX_NESTING are refused.
    """
    data = read_input(Path(path), MAX_CONFIG_BYTES, ConfigError, "config file")
    try:
        return _parse_toml(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse_toml(text: str) -> dict[str, Any]:
    """TOML text as a dict: a TOMLDecodeError when invalid, a ConfigError when nested deeper than MAX_NESTING."""
    try:
        settings = tomllib.loads(text)
    except RecursionError:  # tomllib parses nested values recursively
        settings = None
    if settings is None or _depth(settings) > MAX_NESTING:
        raise ConfigError(f"tables or lists nested more than {MAX_NESTING} deep")
    return settings


def _depth(value: Any) -> int:
    """How deep tables and lists nest in ``value`` (a scalar: 0), counted without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
            deepest = max(deepest, depth + 1)
    return deepest


# The model settings only a CNN uses: its convolutional blocks and its random image changes.
CNN_ONLY = (
    "filters", "convs_per_block", "kernel_size", "batch_norm", "conv_keep_prob",
    "augment", "shift", "rotation", "zoom", "pen_width", "elastic", "blur", "contrast",
)  # fmt: skip


def write_config(config: Config, path: Path, base: Config | None = None) -> None:
    """Write ``config`` as TOML (read back by :func:`resolve_config`).

    For an MLP, the CNN-only model settings (:data:`CNN_ONLY`) are left out where
    they are as in ``base``, the preset the file names and is read back onto: the
    file lists what the network uses, and reading it back gives ``config`` again.
    """
    settings = config.to_dict()
    if base is not None and config.model.architecture == "mlp":
        model, unused = settings["model"], base.to_dict()["model"]
        settings["model"] = {key: value for key, value in model.items() if key not in CNN_ONLY or value != unused[key]}
    write_text_atomic(path, tomli_w.dumps(settings))


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value``: the value in TOML syntax, bare strings (also in lists) allowed."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.epochs=10")
    try:
        return key.strip(), _parse_value(raw.strip())
    except ConfigError as exc:
        raise ConfigError(f"--set {key.strip()}: {exc}") from None


def _parse_value(raw: str, depth: int = 0) -> Any:
    """A TOML value, or a bare string, or a list of either (``[relu, softmax]``), nested at most MAX_NESTING deep."""
    if depth > MAX_NESTING:
        raise ConfigError(f"lists nested more than {MAX_NESTING} deep")
    try:
        return _parse_toml(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw.startswith("[") and raw.endswith("]"):
            return [_parse_value(item.strip(), depth + 1) for item in raw[1:-1].split(",") if item.strip()]
        return raw


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with ``{"section.key": value}`` applied and validated."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        sub = getattr(config, section, None) if section in _SECTIONS else None
        if sub is None or key not in _field_types(type(sub)):
            close = closest(dotted, known_settings())
            hint = f"did you mean {close}?" if close else f"expected one of {', '.join(known_settings())}"
            raise ConfigError(f"unknown setting {dotted!r}: {hint}")
        sections.setdefault(section, {})[key] = _coerce(dotted, value, _field_types(type(sub))[key])
    return dataclasses.replace(
        config,
        **{name: dataclasses.replace(getattr(config, name), **vals) for name, vals in sections.items()},
    )


def known_settings() -> list[str]:
    """Every ``section.key`` a config accepts."""
    return [f"{name}.{key}" for name, cls in _SECTIONS.items() for key in _field_types(cls)]


def check_layers(
    layers: typing.Sequence[int],
    activations: typing.Sequence[str],
    lambtha: float,
    keep_prob: float | None,
) -> None:
    """Validate ``build_model``'s arguments; a ConfigError (a ValueError) names the bad one."""
    if len(layers) == 0:
        raise ConfigError("layers is empty: expected at least one layer width")
    if len(layers) != len(activations):
        raise ConfigError(
            f"{len(layers)} layers but {len(activations)} activations: expected one activation per layer"
        )
    for width in layers:
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ConfigError(f"layer width {width!r}: expected a positive integer")
    for name in activations:
        _check_activation(name)
    if isinstance(lambtha, bool) or not isinstance(lambtha, (int, float)) or not 0 <= lambtha < math.inf:
        raise ConfigError(f"lambtha={lambtha!r}: expected a number >= 0")
    check_keep_prob("keep_prob", keep_prob)


def check_conv_blocks(filters: typing.Sequence[int], convs_per_block: int, kernel_size: int, conv_keep_prob: float) -> None:
    """Validate the convolutional part of a CNN."""
    if not filters or any(isinstance(f, bool) or not isinstance(f, int) or f <= 0 for f in filters):
        raise ConfigError(f"filters={list(filters)}: expected a non-empty list of positive integers")
    if len(filters) > 4:
        raise ConfigError(f"filters={list(filters)}: at most 4 blocks fit a 28×28 image (each halves it)")
    _check_positive("convs_per_block", convs_per_block)
    if not 0 < kernel_size < IMAGE_SIZE or kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size={kernel_size}: expected a positive odd integer below {IMAGE_SIZE} (the image's side)")
    check_keep_prob("conv_keep_prob", conv_keep_prob)


def check_keep_prob(name: str, value: float | None) -> None:
    """A keep probability must be in (0, 1], or None for no dropout."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{name}={value!r}: expected 0 < {name.split('.')[-1]} <= 1 (or None)")


# Keras's own activations that the presets use: known without importing Keras (seconds) to build a config.
_COMMON_ACTIVATIONS = frozenset({"relu", "softmax", "sigmoid", "tanh", "linear", "elu", "gelu", "selu", "swish", "silu"})


def _check_activation(name: str) -> None:
    """Unknown activation names are refused, using Keras's own registry (the common ones are known without it)."""
    if not isinstance(name, str):
        raise ConfigError(f"activation {name!r}: expected a name such as relu or softmax")
    if name in _COMMON_ACTIVATIONS:
        return
    from keras import activations

    try:
        activations.get(name)
    except (ValueError, TypeError):
        raise ConfigError(f"unknown activation {name!r}: expected a Keras activation such as relu or softmax") from None


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "training": TrainingConfig,
    "tune": TuneConfig,
}


def check_section(name: str, values: Any, source: Any) -> dict[str, Any]:
    """A TOML table of the config file, checked to be a known section."""
    if name not in _SECTIONS:
        raise ConfigError(f"{source}: unknown section [{name}]: expected {', '.join(_SECTIONS)}")
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {name} must be a table ([{name}] followed by key = value lines)")
    return values


def _field_types(cls: type) -> dict[str, Any]:
    """Field name → resolved type hint of a config dataclass."""
    return typing.get_type_hints(cls)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a TOML/CLI value to a field's type, or raise a ConfigError naming it."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        hint = next(arg for arg in args if arg is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r}: expected a table, e.g. {{\"optimizer.alpha\" = {{low = 1e-4, high = 1e-2}}}}")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r}: expected a list, e.g. [512, 512, 10]")
        return tuple(_coerce(name, item, args[0]) for item in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is not bool and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{name}={value!r}: expected {hint.__name__}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: expected a finite number")
    return value


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """An integer argument of the API must be an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r}: expected an integer >= {minimum}")


def _check_positive(name: str, value: float) -> None:
    """Raise a ConfigError unless ``value`` > 0."""
    if value <= 0:
        raise ConfigError(f"{name}={value}: expected a value > 0")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _strip_none(value: Any) -> Any:
    """Drop None values (TOML has no null) and turn tuples into lists."""
    if isinstance(value, dict):
        return {key: _strip_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_strip_none(item) for item in value]
    return value
