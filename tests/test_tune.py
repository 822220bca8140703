"""Hyperparameter search: the space, pruning, validation apart from the test set, resuming, workers (racing on a new SQLite study too), PostgreSQL, secrets kept out of messages."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from mnist_classifier import ConfigError, load_dataset
from mnist_classifier.config import TuneConfig
from mnist_classifier.presets import resolve_config
from mnist_classifier.tune import Search, open_study, redact, run_search
from tests.test_cli import assert_one_line_error, cli, cli_path
from tests.test_data import write_npz
from tests.test_distribute import free_port
from tests.test_runs import together

QUICK = ["--epochs", "2", "--set", "data.train_limit=2500", "--set", "data.validation_size=500", "--set", "data.test_limit=500"]
# Only settings that learn in 2 epochs: with the whole default space, 3 random trials can all land on a
# tiny learning rate, and the validation check below would fail for that reason, not for the one it tests.
SOUND_SPACE = ["--set", 'tune.space={"optimizer.alpha" = {low = 2e-3, high = 1e-2, log = true}, '
               '"training.batch_size" = {choices = [32, 64]}}']  # fmt: skip
POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "tune.space is empty"),
        ({"data.dataset": {"choices": ["mnist"]}}, "cannot search 'data.dataset'"),
        ({"optimizer.alpa": {"low": 1e-4, "high": 1e-2}}, "did you mean optimizer.alpha?"),
        ({"optimizer.alpha": {"low": 0.1, "high": 0.01}}, "low=0.1 must be below high=0.01"),
        ({"optimizer.alpha": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
        ({"model.layers": {"low": 1, "high": 2}}, "expected a list"),
        ({"model.layers": {"choices": []}}, "expected only choices = [a non-empty list]"),
        ({"training.batch_size": {"low": 16, "high": 256, "step": 0}}, "step=0: expected a positive number"),
        ({"training.batch_size": [32, 64]}, "expected {low = ..., high = ...} or {choices = [...]}"),
    ],
)
def test_bad_search_spaces_are_config_errors(space, message):
    with pytest.raises(ConfigError) as caught:
        TuneConfig(space)
    assert message in str(caught.value)


@pytest.fixture(scope="module")
def scrambled_test_npz(mnist_dir, tmp_path_factory) -> Path:
    """Real MNIST whose test labels are shuffled: a model validated on the test set would score ~10% there."""
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist", mnist_dir)
    shuffled = np.random.default_rng(0).permutation(y_test)
    path = tmp_path_factory.mktemp("scrambled") / "mnist-scrambled-test.npz"
    return write_npz(path, {"x_train": x_train[:3000], "y_train": y_train[:3000], "x_test": x_test, "y_test": shuffled})


def test_a_trial_far_below_the_median_is_pruned(mnist_dir, tmp_path):
    base = resolve_config("notebook", overrides={
        "data.path": str(mnist_dir), "data.train_limit": 2500, "data.validation_size": 500, "training.epochs": 4,
        "tune.space": {"optimizer.alpha": {"low": 1e-7, "high": 1e-2, "log": True}},
    })  # fmt: skip
    plan = Search(f"sqlite:///{tmp_path / 'prune.db'}", "prune", trials=4)
    study = open_study(plan)
    for alpha in (3e-3, 2e-3, 1e-3, 1e-7):  # three sound trials, then one that can barely learn
        study.enqueue_trial({"optimizer.alpha": alpha})
    run_search(base, plan)
    trials = optuna.load_study(study_name="prune", storage=plan.storage).trials
    states = [t.state for t in trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3 + [optuna.trial.TrialState.PRUNED], states
    assert len(trials[-1].intermediate_values) == 2  # judged after the warm-up epoch, stopped before epoch 3 of 4


def test_tune_validates_apart_from_test_resumes_and_retrains_the_best(scrambled_test_npz, tmp_path):
    result = cli("tune", "--preset", "notebook", "--data", scrambled_test_npz, "--trials", "3", *QUICK, *SOUND_SPACE,
                 "--out", tmp_path)  # fmt: skip
    assert "best trial" in result.stdout and "report:" in result.stdout
    (run,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    search = json.loads((run / "tune" / "tune.json").read_text())
    assert search["study"] == "notebook-mnist" and len(search["trials"]) == 3
    # The notebook validates on the test set; trials must not: on held-out training images they score
    # well, while the scrambled test labels give the final model chance accuracy.
    assert search["best_value"] > 0.7
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] < 0.3
    settings = (run / "config.toml").read_text()
    assert f"alpha = {search['best_params']['optimizer.alpha']}" in settings and 'validation = "holdout"' in settings
    assert (run / "tune" / "history.png").stat().st_size > 10_000
    assert "Search: validation accuracy of each trial" in (run / "report" / "report.html").read_text()
    # The same storage and study continue the search, here with two worker processes.
    more = cli("tune", "--preset", "notebook", "--data", scrambled_test_npz, "--trials", "2", "--jobs", "2",
               "--no-retrain", *QUICK, *SOUND_SPACE, "--out", tmp_path)  # fmt: skip
    assert "2 more trial(s), 2 worker(s)" in more.stdout
    assert sorted(line.split()[1] for line in more.stdout.splitlines() if line.startswith("trial ")) == ["3", "4"]
    study = optuna.load_study(study_name="notebook-mnist", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    assert len(study.trials) == 5 and all(t.state.is_finished() for t in study.trials)
    assert len([path for path in tmp_path.iterdir() if path.is_dir()]) == 1


def test_tune_without_finished_trials_says_so(tmp_path, mnist_dir):
    result = cli("tune", "--data", mnist_dir, "--trials", "0", "--out", tmp_path, check=False)
    assert_one_line_error(result, "study 'mlp-mnist' has no finished trial yet")


def _open_together(folder: str, rounds: int, barrier, outcomes) -> None:
    """One worker of the race: with the others, open a study in each of ``rounds`` new SQLite databases."""
    for number in range(rounds):
        barrier.wait()
        try:
            open_study(Search(f"sqlite:///{folder}/race-{number}.db", "race", trials=0))
            outcomes.put("opened")
        except Exception as exc:
            outcomes.put(f"{type(exc).__name__}: {str(exc)[:200]}")


def test_workers_starting_together_on_a_new_sqlite_study_all_open_it(tmp_path):
    workers, rounds = 4, 3
    results = together(_open_together, (str(tmp_path), rounds), workers, workers * rounds)
    assert set(results) == {"opened"}, results
    for number in range(rounds):
        studies = optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/race-{number}.db")
        assert [study.study_name for study in studies] == ["race"]


@pytest.mark.parametrize(
    "url, secrets",
    [
        ("postgresql://tuner:secret@127.0.0.1:{port}/studies", ["secret"]),
        ("postgresql://127.0.0.1:{port}/studies?user=tuner&password=S3cretPW", ["S3cretPW"]),
        # an unencoded @: the driver takes "ssw0rd@127.0.0.1" for the host, and says so
        ("postgresql://tuner:p@ssw0rd@127.0.0.1:{port}/studies", ["p@ssw0rd", "ssw0rd"]),
    ],
)
def test_unreachable_storage_is_a_one_line_error_without_its_secrets(tmp_path, url, secrets):
    result = cli("tune", "--storage", url.format(port=free_port()), "--out", tmp_path, check=False)
    assert_one_line_error(result, "--storage postgresql://", "127.0.0.1", "cannot open the study")
    assert "***" in result.stdout and "***" in result.stderr
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


def test_redact_masks_the_password_and_query_secrets_and_their_echoes():
    assert redact("postgresql://me:pw@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact("sqlite:////tmp/tune.db") == "sqlite:////tmp/tune.db"
    assert redact("postgresql://db/x?user=me&password=S3cret&sslmode=require") == (
        "postgresql://db/x?user=me&password=***&sslmode=require"
    )
    assert redact("postgresql://me:p@ss@db/x") == "postgresql://me:***@db/x"
    message = "failed to resolve host 'ss@db': password p%40ss refused; passes tried: 1"
    masked = "failed to resolve host '***@db': password *** refused; passes tried: 1"
    assert redact("postgresql://me:p%40ss@db/x", message) == redact("postgresql://me:p@ss@db/x", message) == masked


def _run(*command):
    """Run a set-up command; fail with its output if it fails."""
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert done.returncode == 0, f"{command[-1]}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server (Debian's) on 127.0.0.1, run as the postgres user in a scratch folder."""
    if not POSTGRES_BIN:
        pytest.fail("PostgreSQL is not installed: make test installs Debian's postgresql package")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="mnist-classifier-postgres-"))  # pytest's folders are root's alone
    if as_postgres:
        shutil.chown(folder, "postgres")
    data, port, bin_dir = folder / "data", free_port(), POSTGRES_BIN[-1]
    _run(*as_postgres, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    _run(*as_postgres, bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", folder / "log", "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_in_postgresql(postgres, mnist_dir, tmp_path):
    command = [cli_path(), "tune", "--preset", "notebook", "--data", str(mnist_dir), "--storage", postgres,
               "--study", "shared", "--trials", "2", "--no-retrain", *QUICK, "--out", str(tmp_path)]  # fmt: skip
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    started = time.monotonic()
    outputs = [worker.communicate(timeout=600) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]
    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.is_finished() for t in trials)  # complete, or pruned by the median of the others
    # Each worker ran its own two trials, numbered by the shared study.
    numbers = [{int(line.split()[1]) for line in out.splitlines() if line.startswith("trial ")} for out, _ in outputs]
    assert len(numbers[0]) == len(numbers[1]) == 2 and not numbers[0] & numbers[1], numbers
    assert time.monotonic() - started < 600
