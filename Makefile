# Two commands on a fresh machine:
#   make train   set up .venv and train the default model (mlp preset) on MNIST (no C++ toolchain needed)
#   make test    set up .venv, the test data and the oneDNN plugin, then run the core's and the plugin's tests
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
ARGS ?=

PLUGIN = plugins/onednn

.PHONY: train test install test-data plugin models docs

# What training, predicting and serving need (pip's progress shown); the test extras
# (pytest, the docs site, the export extra, the plugin's build tools) only for make test.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

install: $(BIN)/.installed

train: install
	$(BIN)/mnist-classifier train $(ARGS)

# The bundled models (src/mnist_classifier/inference/weights): trained with their presets, then
# copied in without optimizer state, with metrics.json, a model card and their ONNX graphs,
# exported (the export extra) and checked against Keras. Needs both data sets.
models: $(BIN)/.installed-test
	$(BIN)/python scripts/make_models.py $(ARGS)

# Fashion-MNIST for the tests comes from Debian's package (no internet needed), the
# page tests drive Debian's Chromium, the shared-study test of tune runs Debian's
# PostgreSQL, and the oneDNN plugin builds against libdnnl-dev with g++ and cmake.
# Debian's handwriting fonts write a share of the test pictures' digits (tests/scenes),
# so that those pictures are the same on every machine.
HANDWRITING_FONTS = fonts-breip fonts-dkg-handwriting fonts-femkeklaver fonts-rufscript fonts-sjfonts
test-data:
	@MISSING=""; \
	test -d /usr/share/datasets/fashion-mnist || MISSING="$$MISSING dataset-fashion-mnist"; \
	for font in $(HANDWRITING_FONTS); do dpkg -s $$font >/dev/null 2>&1 || MISSING="$$MISSING $$font"; done; \
	test -x /usr/bin/chromium || MISSING="$$MISSING chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || MISSING="$$MISSING postgresql"; \
	test -f /usr/include/oneapi/dnnl/dnnl.hpp || MISSING="$$MISSING libdnnl-dev"; \
	command -v g++ >/dev/null || MISSING="$$MISSING g++"; \
	command -v cmake >/dev/null || MISSING="$$MISSING cmake"; \
	test -z "$$MISSING" || { \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo "sudo -n"); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$MISSING; }

# The CNNs' oneDNN convolutions as a package of their own (plugins/onednn), built against
# the system's oneDNN and the XLA headers of .venv's jax; without it CNNs train on XLA's.
$(BIN)/.plugin: $(BIN)/.installed-test $(PLUGIN)/pyproject.toml $(PLUGIN)/CMakeLists.txt $(wildcard $(PLUGIN)/src/*/*) | test-data
	$(BIN)/python -m pip install --quiet --no-build-isolation ./$(PLUGIN)
	touch $@

plugin: $(BIN)/.plugin

# Two workers: much of the suite waits on process start-up and compilation. A worker that runs
# out of tests takes some of the other's, so that one long test at the end does not run alone.
test: plugin test-data
	$(BIN)/python -m pytest -n 2 --dist worksteal

# The documentation site (mkdocs.yml, docs/), built strictly: a broken link or reference fails.
docs: install
	$(BIN)/python -c "import material, mkdocstrings_handlers.python" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict
