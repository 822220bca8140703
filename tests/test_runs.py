"""Run directories under hostile conditions: processes racing, a second writer, SIGKILL, a full disk, a bad history."""

import errno
import json
import multiprocessing
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import keras
import pytest

from mnist_classifier import TrainingError
from mnist_classifier.pipeline import resume_run, train_run
from mnist_classifier.presets import preset
from mnist_classifier.runs import LOCK_FILE, new_run_dir
from tests.test_cli import SMALL, TINY, assert_one_line_error, cli, cli_path
from tests.test_pipeline import _config, _InterruptAfter

WORKERS, STARTS = 8, 200  # on 2 cores, 40 starts raced only now and then; 200 always do


def _new_run_dirs_together(out: str, barrier, found) -> None:
    """One process of the race: wait for the others, then create its share of the run directories at once."""
    barrier.wait()
    for _ in range(STARTS // WORKERS):
        try:
            found.put(str(new_run_dir(Path(out), preset("mlp"))))
        except Exception as exc:
            found.put(f"{type(exc).__name__}: {exc}")


def together(target, args: tuple, workers: int, outcomes: int) -> list[str]:
    """Run ``target(*args, barrier, queue)`` in real processes released together by the barrier; what they queue.

    The processes are forked (no imports to repeat: fast); they touch files only, never
    JAX, so JAX's warning that a fork may deadlock its threads does not apply.
    """
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, queue)) for _ in range(workers)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        for process in processes:
            process.start()
    results = [queue.get(timeout=300) for _ in range(outcomes)]
    for process in processes:
        process.join(timeout=60)
    return results


def test_run_directories_created_together_are_all_distinct(tmp_path):
    results = together(_new_run_dirs_together, (str(tmp_path),), WORKERS, STARTS)
    assert not [r for r in results if not r.startswith(str(tmp_path))], results
    assert len(set(results)) == STARTS and len(list(tmp_path.iterdir())) == STARTS


def _training(out: Path, mnist_dir: Path, epochs_done: int = 2) -> tuple[subprocess.Popen, Path]:
    """A real ``train`` process, far from done, once its run directory records ``epochs_done`` epochs."""
    command = [cli_path(), "train", "--data", mnist_dir, "--epochs", 100_000, "--out", out, *SMALL, *TINY]
    command.append("--no-report")
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        for history in out.glob("*/history.json"):
            if len(json.loads(history.read_text())) >= epochs_done:
                return process, history.parent
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"training recorded no {epochs_done} epochs: {process.communicate()[1]}")


def test_a_run_being_trained_refuses_a_second_writer_naming_its_pid(tmp_path, mnist_dir):
    trainer, run = _training(tmp_path, mnist_dir)
    try:
        done = len(json.loads((run / "history.json").read_text()))
        with pytest.raises(TrainingError, match=f"{run}: in use by process {trainer.pid}"):
            resume_run(run, epochs=done + 1)  # without the lock: one more epoch, "completed" under the owner
        assert trainer.poll() is None  # the owner trains on, undisturbed
    finally:
        trainer.kill()
        trainer.communicate()
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))


def test_two_resumes_at_once_only_one_completes(tmp_path, mnist_dir):
    with pytest.raises(KeyboardInterrupt):
        train_run(_config(**{"data.path": str(mnist_dir), "training.epochs": 3}), tmp_path, [_InterruptAfter(1)])
    (run,) = tmp_path.iterdir()
    command = [cli_path(), "train", "--resume", str(run), "--epochs", "20", "--no-report"]
    resumes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(resume.wait(timeout=300), resume.communicate()[1]) for resume in resumes]
    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    (refusal,) = [stderr for code, stderr in outcomes if code]
    assert "in use by process" in refusal or "already completed" in refusal, refusal
    assert len(refusal.strip().splitlines()) == 1 and "Traceback" not in refusal
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 21))
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_a_killed_run_is_marked_interrupted_and_its_temporaries_removed_on_resume(tmp_path, mnist_dir, monkeypatch):
    """A real SIGKILL; the half-written temporary is planted as a kill during a save leaves one (3 in 8 do)."""
    trainer, run = _training(tmp_path, mnist_dir)
    trainer.send_signal(signal.SIGKILL)
    trainer.communicate()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    _, temporary = tempfile.mkstemp(prefix=".last.keras.", suffix=".keras", dir=run)
    Path(temporary).write_bytes((run / "last.keras").read_bytes()[:1000])  # not a valid zip
    done = len(json.loads((run / "history.json").read_text()))
    monkeypatch.setenv("MNIST_CLASSIFIER_DATA", str(mnist_dir))
    with pytest.raises(TrainingError, match=f"{done} of {done} epochs already done"):
        resume_run(run, epochs=done)  # refused, yet the dead process's state is cleaned up first
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert [path.name for path in run.glob(".*")] == [LOCK_FILE]
    resume_run(run, epochs=done + 1)
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_a_history_entry_that_is_not_an_object_is_a_one_line_error_on_resume(tmp_path, mnist_dir):
    with pytest.raises(KeyboardInterrupt):
        train_run(_config(**{"data.path": str(mnist_dir), "training.epochs": 2}), tmp_path, [_InterruptAfter(1)])
    (run,) = tmp_path.iterdir()
    history = json.loads((run / "history.json").read_text())
    (run / "history.json").write_text(json.dumps([*history, 7]))
    result = cli("train", "--resume", run, "--epochs", 5, check=False)
    assert_one_line_error(result, str(run / "history.json"), "entry 2 is not a JSON object of numbers")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"  # refused: the record is unchanged


class _FailWriting(keras.callbacks.Callback):
    """Fails the way a full disk does when epoch ``epochs`` is recorded: OSError 28, ENOSPC."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failure_during_training_marks_the_run_failed_with_its_reason(tmp_path, mnist_dir):
    """The ENOSPC is raised by a callback (simulated); the next test fills a real tmpfs where it may mount one."""
    config = _config(**{"data.path": str(mnist_dir), "training.epochs": 3})
    with pytest.raises(TrainingError, match=r"training failed \(\[Errno 28\] No space left on device\)"):
        train_run(config, tmp_path, [_FailWriting(2)])
    (run,) = tmp_path.iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["reason"] == "[Errno 28] No space left on device"
    assert record["epochs_completed"] == 2


@pytest.fixture
def full_disk(tmp_path):
    """A 700 KB tmpfs: room for the config and two checkpoints of the tiny model, not for a third."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount_point)]
    mounted = subprocess.run(mount, capture_output=True)
    if mounted.returncode != 0 or shutil.which("umount") is None:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_a_one_line_error_and_the_run_is_marked_failed(full_disk, mnist_dir):
    """A real full filesystem: the tmpfs above fills while the first epoch's checkpoints are saved."""
    result = cli("train", "--data", mnist_dir, "--epochs", 3, "--out", full_disk, *SMALL, *TINY, "--no-report",
                 check=False)  # fmt: skip
    assert_one_line_error(result, "training failed", "No space left on device", "run.json says failed")
    (run,) = full_disk.iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["reason"]
    assert [path.name for path in run.glob(".*")] == [LOCK_FILE]  # no half-written temporary
