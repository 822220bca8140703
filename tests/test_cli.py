"""The mnist-classifier command, run as a user runs it: exit codes, one-line errors, real runs."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_classifier import build_model, save_model
from mnist_classifier.cli import main
from tests.conftest import FIXTURES

SMALL = ["--set", "data.train_limit=2000", "--set", "data.test_limit=500", "--set", "data.validation_size=500", "--set", "training.batch_size=32"]
TINY = ["--set", "model.layers=[32, 10]", "--set", "model.activations=['relu', 'softmax']", "--set", "model.input_keep_prob=1", "--set", "model.keep_prob=1"]


def cli_path() -> str:
    """The installed command, next to this Python."""
    return shutil.which("mnist-classifier", path=str(Path(sys.executable).parent)) or "mnist-classifier"


MEMORY_CAP = 4 * 2**30  # address space for a command that must not read or allocate without bound
# Run as a launcher (not as a preexec_fn: tests that imported JAX must not fork a multithreaded process)
_LIMIT_THEN_EXEC = (
    "import os, resource, sys; limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def capped(memory: int) -> list[str]:
    """A launcher that runs the command after it under an address-space limit of ``memory`` bytes."""
    return [sys.executable, "-c", _LIMIT_THEN_EXEC, str(memory)]


def cli(*args, env=None, check=True, memory=None, timeout=None, launcher=()):
    """Run the installed command; returns the completed process.

    ``memory`` caps its address space (bytes), so that a regression that reads or
    allocates without bound fails the test instead of the machine; ``timeout``
    (seconds) fails one that would hang; ``launcher`` runs it through another command.
    """
    command = [*(capped(memory) if memory else []), *launcher, cli_path(), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def python_capped(code: str, *args, memory: int = 2**30, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python ``code`` (with ``args``) in a new process capped at ``memory`` bytes of address space and ``timeout`` s."""
    command = [*capped(memory), sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the command in this process, as ``main`` does: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["mnist-classifier", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def fake_device(path: Path) -> Path:
    """A character device node at ``path`` with /dev/null's numbers (reads end at once); skips where mknod is not permitted."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node (mknod) is not permitted here")
    return path


def digit_png(path: Path) -> Path:
    """A PNG of a dark vertical bar on white paper: a 1."""
    pixels = np.full((60, 60), 255, np.uint8)
    pixels[10:50, 28:32] = 0
    Image.fromarray(pixels).save(path)
    return path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_info_reports_source_shapes_and_class_counts(mnist_dir):
    result = cli("info", "--data", mnist_dir, "--json")
    summary = json.loads(result.stdout)
    assert str(mnist_dir) in summary["source"]
    assert summary["splits"]["train"]["x_shape"] == [60000, 28, 28]
    assert summary["splits"]["test"]["class_counts"][1] == 1135
    assert summary["splits"]["train"]["pixels"]["max"] == 255
    table = cli("info", "--data", mnist_dir).stdout
    assert "Images per class" in table and "5923" in table


def test_info_finds_debians_fashion_mnist(fashion_dir):
    summary = json.loads(cli("info", "--dataset", "fashion_mnist", "--json").stdout)
    assert "Debian" in summary["source"] and summary["classes"][9] == "Ankle boot"
    assert summary["splits"]["train"]["class_counts"] == [6000] * 10


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "--dataset", "cifar"], ["unknown dataset 'cifar'"]),
        (["info", "--data", "/nonexistent/mnist"], ["/nonexistent/mnist", "MNIST_CLASSIFIER_DATA"]),
        (["info"], ["mnist not found", "download failed", "--data PATH"]),
        (["train", "--preset", "huge"], ["unknown preset 'huge'"]),
        (["train", "--preset", "cnm"], ["unknown preset 'cnm': did you mean 'cnn'? (known: notebook, mlp,"]),
        (["info", "--dataset", "fashion"], ["unknown dataset 'fashion': did you mean 'fashion_mnist'?"]),
        (["train", "--set", "training.epochz=3"], ["unknown setting 'training.epochz'"]),
        (["train", "--set", "model.keep_prob=0"], ["keep_prob=0"]),
        (["train", "--config", "/nonexistent.toml"], ["/nonexistent.toml: config file not found"]),
        (["evaluate", "/nonexistent.keras"], ["/nonexistent.keras: model file not found"]),
        (["train", "--resume", "/nonexistent-run"], ["/nonexistent-run", "run directory"]),
        (["train", "--resume", "/nonexistent-run", "--seed", "3"], ["only --epochs may be given"]),
        (["train", "--out", "/etc/passwd", "--data", "/nonexistent"], ["/etc/passwd: cannot create the output folder"]),
        (["train", "--set", "model.layers=[64,5]", "--set", "model.activations=[relu,softmax]"], ["expected 10 softmax units"]),
        (["evaluate", "x.keras", "--dataset", "cifar"], ["x.keras: model file not found"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(args, fragments):
    assert_one_line_error(cli(*args, check=False), *fragments)


@pytest.mark.parametrize("args", [["train", "--epochs", "abc"], ["bogus"], ["info", "--nope"]])
def test_command_line_usage_errors_are_one_line_with_exit_2(args):
    result = cli(*args, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and "--help" in result.stderr


def test_no_command_shows_the_help():
    result = cli()
    assert "Usage" in result.stdout and "train" in result.stdout and "evaluate" in result.stdout


def test_train_then_evaluate(tmp_path, mnist_dir):
    result = cli("train", "--data", mnist_dir, "--epochs", 3, "--seed", 1, "--out", tmp_path, *SMALL, *TINY)
    assert "epoch 1/3" in result.stdout and "epoch 3/3" in result.stdout and "test accuracy" in result.stdout
    run = next(tmp_path.iterdir())
    assert json.loads((run / "metrics.json").read_text())["seed"] == 1
    assert f"report: {run / 'report' / 'report.html'}" in result.stdout
    assert {"curves.png", "confusion.png", "per_class.png", "misclassified.png", "report.md"} <= {
        p.name for p in (run / "report").iterdir()
    }
    report = json.loads(cli("evaluate", run / "model.keras", "--data", mnist_dir, "--json").stdout)
    assert report["accuracy"] > 0.8 and len(report["confusion_matrix"]) == 10
    assert {"precision", "recall", "f1", "support"} <= set(report["per_class"][0])
    table = cli("evaluate", run / "model.keras", "--data", mnist_dir).stdout
    assert "Confusion matrix" in table and "Per class" in table


def test_evaluate_the_notebooks_own_tf_keras_file(mnist_dir):
    expected = json.loads((FIXTURES / "notebook_model.json").read_text())
    args = ["evaluate", FIXTURES / "notebook_model.keras", "--data", mnist_dir, "--normalize", "l2", "--json"]
    report = json.loads(cli(*args).stdout)
    assert report["accuracy"] == pytest.approx(expected["test_accuracy"], abs=2e-4)
    assert report["loss"] == pytest.approx(expected["test_loss"], rel=1e-3)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [(b"", ["empty.keras", "empty"]), (b"not a zip", ["empty.keras", "not a zip archive"])],
)
def test_evaluate_bad_files(tmp_path, content, fragments):
    (tmp_path / "empty.keras").write_bytes(content)
    assert_one_line_error(cli("evaluate", tmp_path / "empty.keras", check=False), *fragments)


def test_evaluate_refuses_a_model_that_does_not_fit_the_data(tmp_path, mnist_dir):
    save_model(build_model(100, [10], ["softmax"], 0.0, None), tmp_path / "wide.keras")
    result = cli("evaluate", tmp_path / "wide.keras", "--data", mnist_dir, check=False)
    assert_one_line_error(result, "wide.keras", "(100,)", "28×28")


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes(tmp_path, mnist_dir):
    exe = cli_path()
    # Far more epochs than it can finish before the signal (a tiny epoch takes milliseconds).
    args = [exe, "train", "--data", mnist_dir, "--epochs", 100_000, "--out", tmp_path, *SMALL, *TINY]
    process = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    history = None
    while time.monotonic() < deadline:
        runs = list(tmp_path.iterdir())
        history = runs and runs[0] / "history.json"
        if history and history.exists() and len(json.loads(history.read_text())) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    run = history.parent
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted"
    done = status["epochs_completed"]
    report = json.loads(cli("evaluate", run / "best.keras", "--data", mnist_dir, "--json").stdout)
    assert report["accuracy"] > 0.7
    resumed = cli("train", "--resume", run, "--epochs", done + 1, env={"MNIST_CLASSIFIER_DATA": str(mnist_dir)})
    assert f"epoch {done + 1}/{done + 1}" in resumed.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert len(json.loads((run / "history.json").read_text())) == done + 1


def test_predict_refuses_fifos_and_devices_unread_and_answers_the_rest(tmp_path):
    good = digit_png(tmp_path / "one.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # nobody writes to it: opening it to read would wait forever
    result = cli("predict", "mnist-mlp", fifo, "/dev/zero", good, check=False, memory=MEMORY_CAP, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {fifo}: is a FIFO (named pipe), expected a regular image file",
        "error: /dev/zero: is a character device, expected a regular image file",
    ]
    assert result.stdout.startswith(f"{good}: 1 (")


def test_train_refuses_a_config_that_is_dev_zero_or_a_fifo(tmp_path):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for config, kind in (("/dev/zero", "a character device"), (fifo, "a FIFO (named pipe)")):
        result = cli("train", "--config", config, "--out", tmp_path, check=False, memory=MEMORY_CAP, timeout=120)
        assert_one_line_error(result, f"{config}: is {kind}, expected a regular config file")


CANNOT_DROP = 77
# Root passes every permission check: the launcher drops that power (CAP_DAC_OVERRIDE and
# CAP_DAC_READ_SEARCH from the bounding set, with prctl PR_CAPBSET_DROP = 24) before it runs the command.
_WITHOUT_ROOT_READS = (
    "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
    f"sys.exit({CANNOT_DROP}) if any(libc.prctl(24, cap, 0, 0, 0) for cap in (1, 2)) else os.execv(sys.argv[1], sys.argv[1:])"
)


def test_an_unreadable_file_is_one_error_among_the_answers(tmp_path):
    good, secret, locked = digit_png(tmp_path / "one.png"), digit_png(tmp_path / "secret.png"), tmp_path / "locked"
    secret.chmod(0)
    locked.mkdir(mode=0)
    launcher = [sys.executable, "-c", _WITHOUT_ROOT_READS] if os.geteuid() == 0 else []
    try:
        result = cli("predict", "mnist-mlp", secret, locked, good, check=False, timeout=120, launcher=launcher)
    finally:
        locked.chmod(0o700)
    if result.returncode == CANNOT_DROP:
        pytest.skip("cannot drop root's power to read every file here (prctl PR_CAPBSET_DROP refused)")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {secret}: cannot read (Permission denied)",
        f"error: {locked}: cannot read (Permission denied)",
    ]
    assert result.stdout.startswith(f"{good}: 1 (")


def test_file_names_are_printed_with_control_characters_escaped(tmp_path, monkeypatch, capsys):
    names = ["evil\x1b[31mRED.png", "two\nlines.png", "[bold]loud.png", "bell\x07\x9b.png"]
    files = [digit_png(tmp_path / name) for name in names]
    code, stdout, stderr = run_main(monkeypatch, capsys, "predict", "mnist-mlp", *files, tmp_path / "gone\x1b[2J.png")
    assert code == 1
    assert stderr == f"error: {tmp_path}/gone\\x1b[2J.png: image file not found\n"
    shown = [line.split(": 1 (")[0] for line in stdout.splitlines()]
    assert shown == [f"{tmp_path}/{name}" for name in ("evil\\x1b[31mRED.png", "two\\nlines.png", "[bold]loud.png", "bell\\x07\\x9b.png")]


def test_outputs_never_replace_devices_or_fifos_and_need_their_folder(tmp_path, mnist_dir, monkeypatch, capsys):
    device = fake_device(tmp_path / "samples.png")
    fifo = tmp_path / "grid.png"
    os.mkfifo(fifo)
    cases = [
        (device, f"error: {device}: is a character device: an output replaces only a regular file"),
        (fifo, f"error: {fifo}: is a FIFO (named pipe): an output replaces only a regular file"),
        (tmp_path / "missing" / "x.png", f"error: {tmp_path / 'missing' / 'x.png'}: folder {tmp_path / 'missing'} does not exist"),
    ]
    for target, message in cases:
        code, _, stderr = run_main(monkeypatch, capsys, "info", "--data", mnist_dir, "--show", 1, "--out", target)
        assert (code, stderr) == (1, message + "\n")
    assert device.is_char_device() and fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "samples.png"]


def test_export_and_show_input_refuse_what_is_in_the_way(tmp_path, monkeypatch, capsys):
    device = fake_device(tmp_path / "model.onnx")
    code, _, stderr = run_main(monkeypatch, capsys, "export", "mnist-mlp", "--out", device)
    assert (code, stderr) == (1, f"error: {device}: is a character device: an output replaces only a regular file\n")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    os.mkfifo(inputs / "one-1.png")
    code, _, stderr = run_main(monkeypatch, capsys, "predict", "mnist-mlp", digit_png(tmp_path / "one.png"), "--show-input", inputs)
    assert (code, stderr) == (1, f"error: {inputs / 'one-1.png'}: is a FIFO (named pipe): an output replaces only a regular file\n")
    assert device.is_char_device() and (inputs / "one-1.png").is_fifo()


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        (["--seed", 2**32], ["training.seed=4294967296: expected 0 <= seed < 2**32"]),
        (["--set", "training.batch_size=9223372036854775807"], ["batch size 9,223,372,036,854,775,807", "of memory available"]),
        (["--set", "model.layers=[1000000000000,10]", "--set", "model.activations=[relu,softmax]"],
         ["model.layers=[1000000000000, 10]", "795,000,000,000,010 parameters"]),
        (["--preset", "cnn", "--set", "model.filters=[1000000000]"], ["model.filters=[1000000000]", "of memory available"]),
        (["--preset", "cnn", "--set", "model.kernel_size=1000001"], ["kernel_size=1000001: expected a positive odd integer below 28"]),
        (["--set", "model.layers=" + "[" * 5000 + "]" * 5000], ["--set model.layers: tables or lists nested more than 16 deep"]),
    ],
    ids=["seed", "batch_size", "layers", "filters", "kernel_size", "nesting"],
)  # fmt: skip
def test_settings_the_machine_cannot_hold_are_one_line_before_training(settings, fragments, tmp_path, mnist_dir):
    result = cli("train", "--data", mnist_dir, "--out", tmp_path, *settings, check=False, memory=MEMORY_CAP, timeout=300)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []
