"""The models shipped with the package: listed, as accurate as recorded, exportable, usable by name without data."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from mnist_classifier import load_dataset, preprocess
from mnist_classifier.inference.bundled import BUNDLES, DEFAULT_MODEL, WEIGHTS, bundle_run
from mnist_classifier.errors import ModelFileError
from mnist_classifier.inference.model_info import read_model_info
from mnist_classifier.inference.onnx_export import TOLERANCE
from mnist_classifier.inference.onnx_runtime import shipped_graph
from mnist_classifier.persistence import load_model
from mnist_classifier.pipeline import evaluate_file
from mnist_classifier.inference.predict import open_model
from tests.test_cli import assert_one_line_error, cli
from tests.test_predict import png_file
from tests.test_serve import served

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnist_classifier"


@pytest.fixture(scope="module")
def test_sets(mnist_dir, fashion_dir):
    """Each data set's test images and labels."""
    return {name: load_dataset(name, folder)[1] for name, folder in (("mnist", mnist_dir), ("fashion_mnist", fashion_dir))}


@pytest.mark.parametrize("name", BUNDLES)
def test_each_bundled_model_scores_the_accuracy_recorded_beside_it(name, test_sets, mnist_dir, fashion_dir):
    bundle = BUNDLES[name]
    recorded = bundle.metrics()["test_accuracy"]
    folder = mnist_dir if bundle.dataset == "mnist" else fashion_dir
    result, record = evaluate_file(name, data_path=str(folder))
    assert record.dataset == bundle.dataset and len(result.confusion) == 10
    assert result.accuracy == pytest.approx(recorded, abs=2e-4)  # two images: CPU arithmetic may round otherwise
    assert read_model_info(bundle.path).metrics["test_accuracy"] == pytest.approx(recorded)
    assert load_model(bundle.path, compile=False).jit_compile  # augmentation layers must not make predict eager


@pytest.mark.parametrize("name", BUNDLES)
def test_each_bundled_model_ships_its_own_onnx_graph_that_agrees_on_1000_test_images(name, test_sets):
    network, shape, info = open_model(name)
    shipped = shipped_graph(BUNDLES[name].path)
    assert shipped is not None, f"{name}: model.onnx missing or exported from other weights (make models)"
    assert shipped.info == info
    images, _ = test_sets[info.dataset]
    inputs = preprocess(images[:1000], info.normalization, shape)
    expected = keras.ops.convert_to_numpy(network.predict_on_batch(inputs))
    got = shipped(inputs)
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_models_lists_them_and_the_package_stays_small():
    rows = json.loads(cli("models", "--json").stdout)
    assert [row["name"] for row in rows] == list(BUNDLES)
    assert all(row["test_accuracy"] > 0.9 and row["size_bytes"] > 0 and Path(row["file"]).is_file() for row in rows)
    table = cli("models").stdout
    assert all(name in table for name in BUNDLES) and "%" in table
    package = sum(path.stat().st_size for path in PACKAGE.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    assert package < 16 * 2**20, f"the package holds {package / 2**20:.1f} MB"  # each model twice: .keras and .onnx
    for bundle in BUNDLES.values():
        card = (WEIGHTS / bundle.name / "MODEL_CARD.md").read_text()
        assert "## Known limitations" in card and "| class | precision |" in card
        assert "## Network" in card and "| dense_0 | Dense |" in card and "| layer | type | output shape |" in card


def test_bundled_models_work_right_away_without_any_data_set(test_sets, tmp_path):
    """The test's own environment has no data variable, an empty Keras cache and an unreachable mirror."""
    digits, digit_labels = test_sets["mnist"]
    digit = png_file(tmp_path / "digit.png", digits[0])
    answer = json.loads(cli("predict", "mnist-cnn", digit, "--json").stdout)[0]
    assert answer["label"] == digit_labels[0]
    cache = tmp_path / "cache"
    for name in ("mnist-mlp", "mnist-cnn"):  # their shipped graphs: nothing exported, nothing cached
        on_onnx = cli("predict", name, digit, "--json", "--runtime", "onnx", env={"XDG_CACHE_HOME": str(cache)})
        assert json.loads(on_onnx.stdout)[0]["label"] == digit_labels[0] and "exporting" not in on_onnx.stderr
    assert not (cache / "mnist-classifier" / "onnx").exists()
    with served() as client:  # no model given: mnist-cnn
        model = client.get("/model").json()
        assert model["file"] == "mnist-cnn" and model["dataset"] == "mnist" and model["test_accuracy"] > 0.99
        assert client.post("/predict", json={"pixels": digits[1].tolist()}).json()["label"] == digit_labels[1]
    assert DEFAULT_MODEL == "mnist-cnn"
    items, item_labels = test_sets["fashion_mnist"]
    article = tmp_path / "article.png"
    Image.fromarray(items[0]).resize((112, 112)).save(article)  # light garment on black, as in the data set
    answer = json.loads(cli("predict", "fashion-cnn", article, "--json").stdout)[0]
    assert answer["label"] == item_labels[0] and answer["name"] == "Ankle boot"


def test_a_name_that_is_neither_a_file_nor_a_bundled_model_is_one_clear_error(tmp_path):
    result = cli("predict", "digits", tmp_path, check=False)
    assert_one_line_error(result, "digits: no such model file, and not a bundled model (mnist-mlp, mnist-cnn, fashion-cnn)")


def test_a_misspelt_bundled_name_says_which_one_was_meant(tmp_path):
    result = cli("predict", "mnist-cnm", tmp_path, check=False)
    assert_one_line_error(
        result, "unknown model 'mnist-cnm': did you mean 'mnist-cnn'? (known: mnist-mlp, mnist-cnn, fashion-cnn)"
    )


def test_bundling_a_run_drops_the_optimizer_and_writes_metrics_a_card_and_its_checked_graph(
    mlp_model_path, mnist_dir, tmp_path
):
    run_dir = mlp_model_path.parent
    folder = bundle_run(run_dir, "mnist-mlp", root=tmp_path, data=mnist_dir)
    bundled, source = folder / "model.keras", load_model(mlp_model_path)
    assert bundled.stat().st_size < 0.5 * mlp_model_path.stat().st_size  # Adam's two moments are gone
    plain = keras.models.load_model(bundled)
    x = np.random.default_rng(0).random((8, 784), np.float32)
    np.testing.assert_allclose(plain.predict_on_batch(x), source.predict_on_batch(x), atol=1e-6)
    assert read_model_info(bundled) == read_model_info(mlp_model_path)
    assert json.loads((folder / "metrics.json").read_text()) == json.loads((run_dir / "metrics.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    assert card.startswith("# mnist-mlp") and "| 9 |" in card and "taken for" in card
    assert "## People's pictures" not in card
    assert "## Network" in card and "| dense_0 | Dense | (None, 512) |" in card
    graph = shipped_graph(bundled)
    assert graph is not None and graph.info == read_model_info(bundled)
    assert sorted(path.name for path in folder.iterdir()) == ["MODEL_CARD.md", "metrics.json", "model.keras", "model.onnx"]
    figures = {"runtime": "onnx", "seed": 0, "rows": [{"kind": "digit photos", "cases": 40, "right": 0.75, "rejected": 0.2}]}
    folder = bundle_run(run_dir, "mnist-mlp", root=tmp_path, pictures=figures, data=mnist_dir)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## People's pictures" in card and "| digit photos | 40 | 75.0% | 20.0% |" in card
    with pytest.raises(ModelFileError, match="mnist-cnn is the cnn-real preset on mnist"):
        bundle_run(run_dir, "mnist-cnn", root=tmp_path)


@pytest.mark.parametrize("name", BUNDLES)
def test_each_bundle_recipe_reads_only_files_an_earlier_step_wrote(name):
    """A fine-tune's ``data.extra`` is the file a script before it wrote, in the runs' folder that every step
    shares (not in one run's directory: ``BASE_RUN`` moves on with each run)."""
    written = []
    for command in BUNDLES[name].commands:
        for setting in command.split(" --set ")[1:]:
            key, value = setting.split("=", 1)
            if key == "data.extra":
                assert value in written and "BASE_RUN" not in value, (command, written)
        if command.startswith("python "):
            written.append(command.split("--out ")[1].split()[0])
