"""MkDocs hook: the reference pages generated from the code, so that they cannot drift from it.

- ``commands/NAME.md``: one page per command of the typer app (``mnist_classifier.cli.app``),
  with its usage, arguments and every option. A hand-written ``docs/commands/NAME.md``
  (examples, explanations) places the reference where it writes ``<!-- generated: cli-reference -->``;
  a command without one gets a page of the reference alone.
- ``configuration.md``: every key of the config dataclasses with its type, default and
  meaning (the ``#`` comment beside or above the field in ``mnist_classifier.config``, else
  ``SETTING_MEANINGS`` below), the presets side by side, the default search space.
- ``models/NAME.md``: each bundled model's ``MODEL_CARD.md``; ``benchmarks.md``: ``benchmarks/README.md``.
- Markers ``<!-- generated: NAME -->`` in any page are replaced by the table ``NAME``
  (see ``GENERATORS``); ``{mod:KEY}`` is replaced by ``MODULES[KEY]`` (mkdocstrings'
  ``:::`` lines use it).

Anything out of step (a page for a command that no longer exists, a setting with no
meaning, a meaning for a setting that no longer exists, an unknown marker) stops the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import re
import sys
import tokenize
import typing
from pathlib import Path

import tomli_w
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"

# The modules the pages name by path (``{mod:KEY}``); everything else reads these.
MODULES = {
    "predict": "mnist_classifier.inference.predict",
    "reading": "mnist_classifier.inference.reading",
    "images": "mnist_classifier.inference.images",
    "bundled": "mnist_classifier.inference.bundled",
    "http_limits": "mnist_classifier.serving.limits",
    "distribute": "mnist_classifier.accel.distribute",
    "calibration": "mnist_classifier.calibration",
    "errors": "mnist_classifier.errors",
}
# Stable: mnist_classifier (root: load_dataset, one_hot, preprocess, ...), .config, .presets, .models,
# .training, .evaluation, .persistence, .cli. The bundled models' folder is found through MODULES["bundled"].

# Meanings of the settings whose field has no comment in mnist_classifier.config.
SETTING_MEANINGS = {
    "preset": "The preset the other settings override (`train --preset`, or `preset = \"...\"` at the top of a TOML file).",
    "data.dataset": "`mnist` or `fashion_mnist`.",
    "data.path": "A folder of IDX files (gzipped or not) or a `.npz`. Not set: `$MNIST_CLASSIFIER_DATA`, "
    "the Keras cache, Debian's `dataset-fashion-mnist`, then a checksum-verified download.",
    "data.normalize": "`scale` (x/255), `l2` (the notebook's `keras.utils.normalize`) or `standardize` "
    "(mean and deviation of the training images, recorded in the model).",
    "data.test_limit": "Use only the first N test images (quick runs).",
    "data.validation_size": "Images held out of the training set for validation (`validation = \"holdout\"`), stratified by class.",
    "model.layers": "Widths of the dense layers; the last is the number of classes. For a CNN, its dense head.",
    "model.activations": "One Keras activation per layer; the last is `softmax`.",
    "model.lambtha": "L2 regularization factor on every kernel.",
    "model.keep_prob": "`Dropout(1 - keep_prob)` after every dense layer but the last.",
    "model.convs_per_block": "CNN: convolutions in each block.",
    "model.kernel_size": "CNN: side of each convolution's kernel (odd).",
    "model.batch_norm": "CNN: batch normalization after each convolution.",
    "optimizer.alpha": "Adam's learning rate (the start of a schedule, the peak of `one_cycle`).",
    "optimizer.beta1": "Adam's first-moment decay.",
    "optimizer.beta2": "Adam's second-moment decay.",
    "training.batch_size": "Images per step (with several processes, the global batch).",
    "training.epochs": "Passes over the training images.",
    "training.shuffle": "Shuffle the training images every epoch.",
    "training.early_stopping": "Stop when the validation loss has not improved for `patience` epochs.",
    "training.patience": "Epochs without improvement that early stopping waits.",
    "training.decay_rate": "The inverse-time schedule's decay per epoch.",
    "training.save_best": "Keep `best.keras`, the epoch with the lowest validation loss.",
    "training.restore_best": "End with the best epoch's weights instead of the last's.",
    "training.seed": "Seed of weights, shuffling, dropout and augmentation: the same seed gives the same weights.",
}

# Meanings of the HTTP limits (fields of the Limits dataclass).
LIMIT_MEANINGS = {
    "upload_bytes": "Bytes of one request body, counted as they arrive, whatever `Content-Length` says (413).",
    "pixels": "Pixels of one picture, read from its header before it is decoded (422).",
    "request_pixels": "Pixels of all of a request's pictures together (422).",
    "batch": "Pictures in one `/predict/batch` request (422).",
    "request_seconds": "Seconds for the headers to arrive, then as many again for the body (408).",
}

def _module(name: str):
    """Import ``name`` from this checkout's ``src/`` (never from an installed copy of the package)."""
    if str(SOURCE) not in sys.path:
        sys.path.insert(0, str(SOURCE))  # mkdocs restores sys.path after loading a hook: done here, when needed
    module = importlib.import_module(name)
    package = Path(sys.modules["mnist_classifier"].__file__).resolve()
    if not package.is_relative_to(SOURCE):
        raise PluginError(f"mnist_classifier was imported from {package.parent}, not from {SOURCE}")
    return module


MARKER = re.compile(r"^([ \t]*)<!-- generated: ([\w-]+) -->", re.MULTILINE)
MODULE_REF = re.compile(r"\{mod:(\w+)\}")
PROGRAM = "mnist-classifier"


# --- the command line ------------------------------------------------------------------


def _cli():
    """The app's click group (typer builds it) and a context for it."""
    import typer.main

    cli = _module("mnist_classifier.cli")
    group = typer.main.get_command(cli.app)
    return group, group.make_context(PROGRAM, [], resilient_parsing=True)


def _commands() -> dict:
    """Each visible command by name, in the app's order."""
    group, _ = _cli()
    return {name: command for name, command in group.commands.items() if not getattr(command, "hidden", False)}


def _cell(text: object) -> str:
    """Text for one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _annotation(param) -> object:
    """A parameter's Python type (typer), without Optional; None when it is unknown."""
    descriptor = getattr(param, "type_descriptor", None)
    hint = getattr(descriptor, "annotation", None)
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is list:
        hint = typing.get_args(hint)[0]
    return hint


def _choices(param) -> tuple | None:
    """The values a parameter accepts, when it is a choice."""
    for holder in (getattr(param, "type", None), getattr(param, "type_descriptor", None)):
        choices = getattr(holder, "choices", None)
        if choices:
            return tuple(getattr(choice, "value", choice) for choice in choices)
    return None


def _value(param) -> str:
    """What a parameter takes, in words: ``integer ≥ 1``, ``mnist | fashion_mnist``, ``path``."""
    if getattr(param, "is_flag", False):
        return ""
    choices = _choices(param)
    if choices:
        return " \\| ".join(f"`{choice}`" for choice in choices)
    if getattr(param, "metavar", None):
        kind = param.metavar
    else:
        hint = _annotation(param)
        kind = {int: "integer", float: "number", str: "text", Path: "path", bool: "true \\| false"}.get(hint)
        if kind is None:
            kind = getattr(getattr(param, "type", None), "name", None) or getattr(hint, "__name__", "value")
    low = getattr(param, "min", None)
    high = getattr(param, "max", None)
    if low is not None and high is not None:
        kind += f", {low} to {high}"
    elif low is not None:
        kind += f" ≥ {low}"
    elif high is not None:
        kind += f" ≤ {high}"
    if getattr(param, "multiple", False):
        kind += ", repeatable"
    return kind


def _default(param) -> str:
    """A parameter's default as the command line would spell it; empty when it has none."""
    default = param.default
    if getattr(param, "is_flag", False):
        if getattr(param, "secondary_opts", None):
            return f"`{(param.opts if default else param.secondary_opts)[0]}`"
        return ""
    if default is None or default == () or default == [] or callable(default):
        return ""
    return f"`{getattr(default, 'value', default)}`"


def _usage(name: str, command) -> str:
    """``mnist-classifier NAME [OPTIONS] ARG...``."""
    pieces = [PROGRAM, name, "[OPTIONS]"]
    for param in command.params:
        if param.param_type_name == "argument":
            shown = param.name.upper() + ("..." if param.nargs == -1 else "")
            pieces.append(shown if param.required else f"[{shown}]")
    return " ".join(pieces)


def _help(command) -> str:
    """A command's help text, paragraph by paragraph."""
    return (command.help or "").replace("\b\n", "").strip()


def _is_help(param) -> bool:
    """The ``--help`` option every command has."""
    return "--help" in getattr(param, "opts", ())


def _options_table(params) -> str:
    """The options of a command (or of the program) as a Markdown table."""
    rows = ["| option | value | default | meaning |", "| --- | --- | --- | --- |"]
    for param in params:
        if param.param_type_name != "option" or _is_help(param) or getattr(param, "hidden", False):
            continue
        names = " / ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
        rows.append(f"| {names} | {_value(param)} | {_default(param)} | {_cell(param.help or '')} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def cli_reference(page) -> str:
    """The reference of the command a page is named after."""
    name = Path(page.file.src_uri).stem
    command = _commands()[name]
    parts = [_help(command), f"```\n{_usage(name, command)}\n```"]
    arguments = [param for param in command.params if param.param_type_name == "argument"]
    if arguments:
        rows = ["| argument | value | meaning |", "| --- | --- | --- |"]
        for param in arguments:
            count = "one or more" if param.nargs == -1 else ("optional" if not param.required else "")
            default = f" (default: `{param.default}`)" if param.default not in (None, (), []) else ""
            value = ", ".join(part for part in (_value(param), count) if part)
            rows.append(f"| `{param.name.upper()}` | {value} | {_cell((param.help or '') + default)} |")
        parts.append("**Arguments**\n\n" + "\n".join(rows))
    options = _options_table(command.params)
    if options:
        parts.append("**Options**\n\n" + options)
    return "\n\n".join(parts)


def cli_commands(page) -> str:
    """Every command, one line each, linked to its page."""
    rows = ["| command | what it does |", "| --- | --- |"]
    here = Path(page.file.src_uri).parent
    for name, command in _commands().items():
        target = Path("commands") / f"{name}.md"
        link = Path(*[".."] * len(here.parts), target) if here.parts else target
        summary = _help(command).split("\n\n")[0]
        rows.append(f"| [`{name}`]({link.as_posix()}) | {_cell(summary)} |")
    return "\n".join(rows)


def cli_global_options(page) -> str:
    """The options given before the command name."""
    group, _ = _cli()
    return _options_table(group.params) or "Only `--help`."


# --- the configuration -----------------------------------------------------------------


def _config():
    return _module("mnist_classifier.config")


def _sections() -> dict[str, type]:
    """The config's sections: ``{"data": DataConfig, ...}``, in the order of ``Config``'s fields."""
    config = _config()
    return {
        field.name: typing.get_type_hints(config.Config)[field.name]
        for field in dataclasses.fields(config.Config)
        if dataclasses.is_dataclass(typing.get_type_hints(config.Config)[field.name])
    }


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#`` comment of each field of a dataclass: beside it, else the lines just above it."""
    import inspect

    return _comments(inspect.getsource(cls), {field.name for field in dataclasses.fields(cls)})


def _comments(source: str, names: set[str]) -> dict[str, str]:
    """The ``#`` comment of each assignment to one of ``names`` in ``source``: beside it, else the lines just above."""
    line_comment = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    comments: dict[str, str] = {}
    above: list[str] = []
    for number, line in enumerate(source.splitlines(), 1):
        if line.strip().startswith("#"):
            above.append(line_comment.get(number, ""))
            continue
        match = re.match(r"\s*(\w+)\s*[:=]", line)
        if match and match.group(1) in names:
            text = line_comment.get(number) or " ".join(above)
            if text and "fmt:" not in text:
                comments[match.group(1)] = text
        above = []
    return comments


def _type_name(hint: object) -> str:
    """A setting's type as a TOML file's writer thinks of it: ``integer``, ``list of strings``, ``number, optional``."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint):
        return f"{_type_name(args[0])}, optional"
    if typing.get_origin(hint) is tuple:
        return "list of " + {"integer": "integers", "string": "strings", "number": "numbers"}.get(_type_name(args[0]), _type_name(args[0]))
    if typing.get_origin(hint) is dict:
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(hint, getattr(hint, "__name__", str(hint)))


def _toml_value(value: object) -> str:
    """A setting's value as it is written in a TOML file, on one line; ``not set`` for None."""
    if value is None:
        return "not set"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def _meaning(key: str, comment: str | None, used: set[str]) -> str:
    """A setting's meaning: the code's comment, else SETTING_MEANINGS; the build stops if neither or both."""
    written = SETTING_MEANINGS.get(key)
    if comment and written:
        raise PluginError(f"{key} now has a comment in mnist_classifier.config: remove it from SETTING_MEANINGS in {__file__}")
    if not comment and not written:
        raise PluginError(f"{key} has no meaning: add a comment beside the field in mnist_classifier.config or an entry to SETTING_MEANINGS in {__file__}")
    used.add(key)
    return comment or written


def config_keys(page) -> str:
    """Every setting of every section: type, default, meaning."""
    config = _config()
    used: set[str] = set()
    top = next(field for field in dataclasses.fields(config.Config) if field.name == "preset")
    top_type = _type_name(typing.get_type_hints(config.Config)["preset"])
    parts = [
        "| key | type | default | meaning |\n| --- | --- | --- | --- |\n"
        f"| `preset` | {top_type} | `{_toml_value(top.default)}` | {_cell(_meaning('preset', None, used))} |"
    ]
    for section, cls in _sections().items():
        if section == "tune":
            continue
        comments = _field_comments(cls)
        rows = [f"### `[{section}]`", _first_paragraph(cls.__doc__), "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            meaning = _meaning(f"{section}.{field.name}", comments.get(field.name), used)
            shown = _toml_value(default)
            rows.append(f"| `{field.name}` | {_type_name(hints[field.name])} | {shown if default is None else f'`{shown}`'} | {_cell(meaning[:1].upper() + meaning[1:])} |")
        parts.append("\n".join(rows[:2]) + "\n\n" + "\n".join(rows[2:]))
    stale = set(SETTING_MEANINGS) - used
    if stale:
        raise PluginError(f"SETTING_MEANINGS in {__file__} names settings the config no longer has: {', '.join(sorted(stale))}")
    return "\n\n".join(parts)


def _first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line, with reST's double backquotes as Markdown's."""
    return " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "`")


def tune_space(page) -> str:
    """The default ``[tune.space]`` as TOML."""
    space = _config().TuneConfig().space
    lines = ["[tune.space]"] + [f'"{key}" = {_toml_value(value)}' for key, value in space.items()]
    return "```toml\n" + "\n".join(lines) + "\n```"


def presets(page) -> str:
    """The presets side by side: every setting any of them changes from the dataclass defaults."""
    config = _config()
    named = _module("mnist_classifier.presets").PRESETS
    base = _flat(config.Config().to_dict())
    flats = {name: _flat(preset.to_dict()) for name, preset in named.items()}
    keys = [key for key in base if key != "preset" and not key.startswith("tune.") and any(flat.get(key) != base[key] for flat in flats.values())]
    keys += [key for flat in flats.values() for key in flat if key not in base and key not in keys and not key.startswith("tune.")]
    header = "| setting | default | " + " | ".join(f"`{name}`" for name in flats) + " |"
    rows = [header, "| --- " * (len(flats) + 2) + "|"]
    for key in keys:
        cells = [_preset_cell(flat.get(key), base.get(key)) for flat in flats.values()]
        rows.append(f"| `{key}` | `{_toml_value(base.get(key))}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _preset_cell(value: object, default: object) -> str:
    """A preset's value, or a dot where it keeps the default."""
    return "·" if value == default else f"`{_toml_value(value)}`"


def _flat(settings: dict, prefix: str = "") -> dict:
    """``{"data": {"dataset": ...}}`` as ``{"data.dataset": ...}``."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and key != "space":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def preset_toml(page) -> str:
    """The ``config.toml`` a run of the ``mlp`` preset writes, as ``write_config`` writes it."""
    import tempfile

    config = _config()
    named = _module("mnist_classifier.presets").PRESETS
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.toml"
        config.write_config(named["mlp"], path)
        return "```toml\n" + path.read_text().strip() + "\n```"


# --- models, limits --------------------------------------------------------------------


def _bundled():
    return _module(MODULES["bundled"])


def models_table(page) -> str:
    """The bundled models: what ``mnist-classifier models`` lists, with calibration, linked to their cards."""
    bundled = _bundled()
    rows = ["| name | data set | preset | accuracy | epochs | size | T | threshold |", "| --- " * 8 + "|"]
    for row in bundled.bundled_models():
        calibration = bundled.BUNDLES[row["name"]].metrics().get("calibration") or {}
        temperature = calibration.get("temperature")
        threshold = calibration.get("reject_below")
        rows.append(
            f"| [`{row['name']}`]({row['name']}.md) | `{row['dataset']}` | `{row['preset']}` | {row['test_accuracy']:.2%} "
            f"| {row['epochs']} | {row['size_bytes'] / 2**20:.1f} MB | {'' if temperature is None else f'{temperature:.3f}'} "
            f"| {'' if threshold is None else f'{threshold:.4f}'} |"
        )
    return "\n".join(rows)


def http_limits(page) -> str:
    """What one request may carry: the fields of ``Limits`` with their defaults."""
    limits = _module(MODULES["http_limits"]).Limits
    rows = ["| limit | default | meaning |", "| --- | --- | --- |"]
    fields = dataclasses.fields(limits)
    missing = [field.name for field in fields if field.name not in LIMIT_MEANINGS]
    stale = set(LIMIT_MEANINGS) - {field.name for field in fields}
    if missing or stale:
        raise PluginError(f"LIMIT_MEANINGS in {__file__} is out of step with Limits: missing {missing}, stale {sorted(stale)}")
    for field in fields:
        value = field.default
        shown = f"{value:,}" + (f" ({value / 2**20:g} MB)" if field.name.endswith("bytes") else "")
        rows.append(f"| `{field.name}` | {shown} | {_cell(LIMIT_MEANINGS[field.name])} |")
    return "\n".join(rows)


def reader_settings(page) -> str:
    """The constants of the picture reader (``images``, ``reading``) with their comments."""
    import inspect

    rows = ["| constant | value | what it is |", "| --- | --- | --- |"]
    for key in ("images", "reading"):
        module = _module(MODULES[key])
        names = {name for name in vars(module) if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)}
        for name, comment in _comments(inspect.getsource(module), names).items():
            value = getattr(module, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
                rows.append(f"| `{name}` | {shown} | {_cell(comment[:1].upper() + comment[1:])} |")
    return "\n".join(rows)


GENERATORS = {
    "cli-reference": cli_reference,
    "cli-commands": cli_commands,
    "cli-global-options": cli_global_options,
    "config-keys": config_keys,
    "tune-space": tune_space,
    "presets": presets,
    "preset-toml": preset_toml,
    "models-table": models_table,
    "http-limits": http_limits,
    "reader-settings": reader_settings,
}


# --- MkDocs events ---------------------------------------------------------------------


def on_config(config):
    """Fill the nav's Commands and Models sections with a page per command and per bundled model."""
    extra = {
        "commands/index.md": [{name: f"commands/{name}.md"} for name in _commands()],
        "models/index.md": [{name: f"models/{name}.md"} for name in _bundled().BUNDLES],
    }
    for item in config["nav"]:
        for title, section in (item.items() if isinstance(item, dict) else ()):
            if isinstance(section, list) and section and section[0] in extra:
                item[title] = [section[0], *extra.pop(section[0])]
    if extra:
        raise PluginError(f"mkdocs.yml's nav needs a section starting with {', '.join(extra)}")
    return config


def on_files(files, config):
    """Add the generated pages; refuse a hand-written page for a command that does not exist."""
    commands = _commands()
    for file in list(files):
        path = Path(file.src_uri)
        if path.parent.as_posix() == "commands" and path.suffix == ".md" and path.stem != "index" and path.stem not in commands:
            raise PluginError(f"docs/{file.src_uri}: there is no command {path.stem!r} (commands: {', '.join(commands)})")
    for name in commands:
        if files.get_file_from_path(f"commands/{name}.md") is None:
            files.append(File.generated(config, f"commands/{name}.md", content=f"# `{name}`\n\n<!-- generated: cli-reference -->\n"))
    for name, bundle in _bundled().BUNDLES.items():
        files.append(File.generated(config, f"models/{name}.md", abs_src_path=str(bundle.folder / "MODEL_CARD.md")))
    files.append(File.generated(config, "benchmarks.md", abs_src_path=str(ROOT / "benchmarks" / "README.md")))
    return files


INCLUDED = re.compile(r"models/(?!index\.md$).+\.md|benchmarks\.md")  # pages that are files from elsewhere


def _blank_before_headings(markdown: str) -> str:
    """A blank line before every heading: GitHub ends a table at a heading, Python-Markdown only at a blank line."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line) and lines and lines[-1].strip():
            lines.append("")
        lines.append(line)
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown, page, config, files):
    """Replace the markers with generated tables and ``{mod:KEY}`` with the module's path."""
    if INCLUDED.fullmatch(page.file.src_uri):
        return _blank_before_headings(markdown)
    if page.file.src_uri.startswith("commands/") and page.file.src_uri != "commands/index.md":
        if "<!-- generated: cli-reference -->" not in markdown:
            raise PluginError(f"docs/{page.file.src_uri}: a command's page needs <!-- generated: cli-reference -->")

    def generated(match: re.Match) -> str:
        indent, name = match.groups()
        if name not in GENERATORS:
            raise PluginError(f"docs/{page.file.src_uri}: unknown marker {match.group(0).strip()} (known: {', '.join(GENERATORS)})")
        return "\n".join(indent + line if line else line for line in GENERATORS[name](page).splitlines())

    def module(match: re.Match) -> str:
        if match.group(1) not in MODULES:
            raise PluginError(f"docs/{page.file.src_uri}: unknown module {match.group(0)} (known: {', '.join(MODULES)})")
        return MODULES[match.group(1)]

    return MODULE_REF.sub(module, MARKER.sub(generated, markdown))
