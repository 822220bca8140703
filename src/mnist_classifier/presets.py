"""Named starting points for a run, and how a run's config is resolved from one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mnist_classifier.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    apply_overrides,
    check_section,
    read_config_file,
)
from mnist_classifier.errors import ConfigError, unknown_name

PRESETS: dict[str, Config] = {
    "notebook": Config(
        preset="notebook",
        data=DataConfig(normalize="l2", validation="test"),
        model=ModelConfig((128, 64, 10), ("relu", "relu", "softmax"), 0.01, 0.8),
        optimizer=OptimizerConfig(0.001, 0.9, 0.999),
        training=TrainingConfig(
            batch_size=32, epochs=5, shuffle=False, early_stopping=True, patience=3,
            save_best=True,
        ),
    ),
    # The bundled mnist-mlp's preset.
    "mlp": Config(
        preset="mlp",
        data=DataConfig(normalize="scale", validation="holdout"),
        model=ModelConfig(
            (512, 512, 10), ("relu", "relu", "softmax"), lambtha=1e-5, keep_prob=0.5, input_keep_prob=0.8
        ),
        optimizer=OptimizerConfig(0.001, 0.9, 0.999),
        training=TrainingConfig(
            batch_size=128, epochs=30, schedule="inverse_time", decay_rate=0.2, save_best=True,
        ),
    ),
    "cnn": Config(
        preset="cnn",
        data=DataConfig(normalize="scale", validation="holdout"),
        model=ModelConfig(
            architecture="cnn", layers=(128, 10), activations=("relu", "softmax"), lambtha=0.0,
            keep_prob=0.5, filters=(32, 64, 128), convs_per_block=2, batch_norm=True, conv_keep_prob=0.9,
        ),
        optimizer=OptimizerConfig(0.003, 0.9, 0.999),
        training=TrainingConfig(batch_size=128, epochs=10, schedule="one_cycle", save_best=True),
    ),
}
# Trains on all 60,000 images for a fixed 20 epochs (no validation set to pick an epoch
# from), with label smoothing 0.1.
PRESETS["cnn-augmented"] = dataclasses.replace(
    PRESETS["cnn"],
    preset="cnn-augmented",
    data=dataclasses.replace(PRESETS["cnn"].data, validation="none"),
    model=dataclasses.replace(PRESETS["cnn"].model, augment=True),
    training=dataclasses.replace(PRESETS["cnn"].training, epochs=20, save_best=False, label_smoothing=0.1),
)
# Fine-tunes a trained cnn (by default the bundled mnist-cnn) for pictures people take:
# pen width, elastic distortion, blur and contrast on top of the shifts, rotations and
# zoom, and 12,000 non-digit pictures and 6,000 pairs of touching digits framed as one
# trained towards the uniform distribution (outlier exposure: the reader asks the model
# whether to cut a wide mark in two). 5,000 training images are held out to fit the
# temperature and the "not a digit" threshold (the base model may have trained on them:
# see benchmarks/README.md).
# The result is averaged, weight by weight, with the base (base_share), which keeps most
# of the base's accuracy on MNIST and most of the fine-tune's "not a digit" rejections.
PRESETS["cnn-real"] = dataclasses.replace(
    PRESETS["cnn"],
    preset="cnn-real",
    data=dataclasses.replace(PRESETS["cnn"].data, outliers=12000, pairs=6000),
    model=dataclasses.replace(
        PRESETS["cnn"].model, augment=True, rotation=12.0, pen_width=0.5, elastic=1.0, blur=0.6, contrast=0.2
    ),
    optimizer=dataclasses.replace(PRESETS["cnn"].optimizer, alpha=2e-4),
    training=dataclasses.replace(
        PRESETS["cnn"].training, epochs=3, schedule="cosine", label_smoothing=0.1, init_from="mnist-cnn",
        base_share=0.5,
    ),
)
# One epoch of a small CNN (16 and 32 filters, one convolution per block, no batch
# normalization or dropout) in batches of 128 with a one-cycle schedule at a high peak
# rate, short Adam memories and label smoothing: past 99% MNIST test accuracy in under
# 30 seconds from process start on a 2-core CPU, compile cache cold (see
# benchmarks/README.md). 5,000 images are held out to fit the temperature.
PRESETS["fast"] = Config(
    preset="fast",
    data=DataConfig(normalize="scale", validation="holdout"),
    model=dataclasses.replace(
        PRESETS["cnn"].model, layers=(256, 10), keep_prob=1.0, filters=(16, 32), convs_per_block=1,
        batch_norm=False, conv_keep_prob=1.0,
    ),
    optimizer=OptimizerConfig(0.015, 0.7, 0.9),
    training=TrainingConfig(batch_size=128, epochs=1, schedule="one_cycle", label_smoothing=0.1),
)
# The cnn network at half its width (16, 32 and 64 filters, two convolutions per block,
# batch normalization, dropout) for four epochs of fast's schedule at cnn's peak rate:
# past 99.5% MNIST test accuracy in under 3 minutes from process start on a 2-core
# AVX-512 CPU (see benchmarks/README.md).
PRESETS["cnn-small"] = dataclasses.replace(
    PRESETS["fast"],
    preset="cnn-small",
    model=dataclasses.replace(
        PRESETS["fast"].model, layers=(128, 10), keep_prob=0.5, filters=(16, 32, 64), convs_per_block=2, batch_norm=True
    ),
    optimizer=dataclasses.replace(PRESETS["fast"].optimizer, alpha=0.003),
    training=dataclasses.replace(PRESETS["fast"].training, epochs=4),
)
DEFAULT_PRESET = "mlp"


def preset(name: str) -> Config:
    """A named preset, or a ConfigError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(unknown_name("preset", name, list(PRESETS))) from None


def resolve_config(
    preset_name: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the run's config: a preset, then a TOML file, then ``section.key`` overrides.

    The file may name its own base with a top-level ``preset = "..."``; an explicit
    ``preset_name`` wins over it.
    """
    settings = read_config_file(config_file) if config_file is not None else {}
    named = settings.pop("preset", None)
    if named is not None and not isinstance(named, str):
        raise ConfigError(f"{config_file}: preset = {named!r}: expected a preset name such as \"mlp\"")
    base = preset(preset_name or named or DEFAULT_PRESET)
    flat = {
        f"{section}.{key}": value
        for section, values in settings.items()
        for key, value in check_section(section, values, config_file).items()
    }
    flat.update(overrides or {})
    return apply_overrides(base, flat)
