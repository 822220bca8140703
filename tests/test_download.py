"""Downloads against a real HTTP server on 127.0.0.1: checksums, retries, cut-offs, all-or-nothing."""

import dataclasses
import hashlib
import io
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mnist_classifier.data import sources
from mnist_classifier.data.sources import load_dataset, read_dataset
from mnist_classifier.data.download import RemoteFile, download_files
from mnist_classifier.errors import DataError, DownloadError

PAYLOAD = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# --- the server: each test says what each path answers ----------------------------------


def serve(body: bytes):
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def status(code: int):
    return lambda handler: handler.send_error(code)


def cut_off(body: bytes, sent: int):
    """Announce all of ``body``, send only ``sent`` bytes of it, then close the connection."""

    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:sent])
        handler.wfile.flush()
        handler.close_connection = True

    return answer


def in_turn(*answers):
    """Answer successive requests with ``answers``, the last one repeating."""
    calls = iter(answers)
    last = answers[-1]
    return lambda handler: next(calls, last)(handler)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        self.server.routes.get(self.path, status(404))(self)

    def log_message(self, *args):
        pass


class Server:
    def __init__(self, httpd):
        self.httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/files/"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def route(self, name: str, answer) -> str:
        self.httpd.routes[f"/files/{name}"] = answer
        return self.url + name


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def target(tmp_path):
    return tmp_path / "cache"


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, name, done, total):
        self.calls.append((name, done, total))


# --- download_files ---------------------------------------------------------------------


def test_good_file_is_downloaded_verified_with_progress(server, target):
    server.route("blob.bin", serve(PAYLOAD))
    progress = Recorder()
    paths = download_files(server.url, [RemoteFile("blob.bin", sha(PAYLOAD))], target, progress=progress)
    assert paths == [target / "blob.bin"]
    assert paths[0].read_bytes() == PAYLOAD
    assert files_in(target) == ["blob.bin"]
    assert len(progress.calls) >= 2
    done = [d for _, d, _ in progress.calls]
    assert done == sorted(set(done)) and done[-1] == len(PAYLOAD)
    assert {(n, t) for n, _, t in progress.calls} == {("blob.bin", len(PAYLOAD))}


def test_checksum_mismatch_is_rejected_without_retry(server, target):
    url = server.route("blob.bin", serve(PAYLOAD))
    wrong = sha(b"something else")
    message = f"{url}: sha256 mismatch (expected {wrong}, got {sha(PAYLOAD)})"
    with pytest.raises(DownloadError, match=re.escape(message)):
        download_files(server.url, [RemoteFile("blob.bin", wrong)], target)
    assert len(server.requests) == 1
    assert files_in(target) == []


def test_server_error_is_retried_then_reported(server, target):
    url = server.route("blob.bin", status(500))
    with pytest.raises(DownloadError, match=re.escape(f"{url}: download failed after 3 attempts: HTTP 500")):
        download_files(server.url, [RemoteFile("blob.bin", sha(PAYLOAD))], target)
    assert server.requests == ["/files/blob.bin"] * 3
    assert files_in(target) == []


def test_server_error_then_success_is_recovered_by_a_retry(server, target):
    server.route("blob.bin", in_turn(status(503), serve(PAYLOAD)))
    [path] = download_files(server.url, [RemoteFile("blob.bin", sha(PAYLOAD))], target, retries=2)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert files_in(target) == ["blob.bin"]


def test_not_found_is_not_retried(server, target):
    url = server.url + "blob.bin"  # no route: the server answers 404
    with pytest.raises(DownloadError, match=re.escape(f"{url}: HTTP 404")):
        download_files(server.url, [RemoteFile("blob.bin", sha(PAYLOAD))], target, retries=3)
    assert server.requests == ["/files/blob.bin"]
    assert files_in(target) == []


def test_connection_cut_mid_transfer_is_reported_and_cleaned_up(server, target):
    url = server.route("blob.bin", cut_off(PAYLOAD, 100_000))
    progress = Recorder()
    with pytest.raises(
        DownloadError,
        match=re.escape(
            f"{url}: download failed after 2 attempts: connection closed after 100000 of {len(PAYLOAD)} bytes"
        ),
    ):
        remotes = [RemoteFile("blob.bin", sha(PAYLOAD))]
        download_files(server.url, remotes, target, retries=2, progress=progress)
    assert len(server.requests) == 2
    assert files_in(target) == []
    assert progress.calls and all(t == len(PAYLOAD) and d <= 100_000 for _, d, t in progress.calls)


def test_second_file_failing_leaves_neither_file(server, target):
    server.route("first.bin", serve(PAYLOAD))
    url = server.route("second.bin", serve(b"corrupted"))
    remotes = [RemoteFile("first.bin", sha(PAYLOAD)), RemoteFile("second.bin", sha(b"intact"))]
    with pytest.raises(DownloadError, match=re.escape(f"{url}: sha256 mismatch")):
        download_files(server.url, remotes, target)
    assert server.requests == ["/files/first.bin", "/files/second.bin"]
    assert files_in(target) == []


def test_second_file_missing_leaves_neither_file(server, target):
    server.route("first.bin", serve(PAYLOAD))
    remotes = [RemoteFile("first.bin", sha(PAYLOAD)), RemoteFile("second.bin", sha(b"x"))]
    with pytest.raises(DownloadError, match=re.escape(f"{server.url}second.bin: HTTP 404")):
        download_files(server.url, remotes, target)
    assert files_in(target) == []


# --- load_dataset's download into the Keras cache ---------------------------------------


def mnist_npz() -> tuple[bytes, dict[str, np.ndarray]]:
    """A small valid mnist-layout npz whose test labels are not MNIST's."""
    rng = np.random.default_rng(42)
    arrays = {
        "x_train": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(50) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(20)[::-1] % 10).astype(np.uint8),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), arrays


@pytest.fixture
def served_mnist(server, monkeypatch):
    raw, arrays = mnist_npz()
    spec = sources.DATASETS["mnist"]
    remote = (RemoteFile("mnist.npz", sha(raw)),)
    monkeypatch.setitem(sources.DATASETS, "mnist", dataclasses.replace(spec, remote=remote))
    server.route("mnist.npz", serve(raw))
    return raw, arrays


def check_arrays(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for key, got in zip(("x_train", "y_train", "x_test", "y_test"), (x_train, y_train, x_test, y_test)):
        np.testing.assert_array_equal(got, arrays[key], err_msg=key)


def test_load_dataset_downloads_into_keras_cache_then_reuses_it(server, served_mnist, monkeypatch):
    raw, arrays = served_mnist
    monkeypatch.setenv("MNIST_CLASSIFIER_MIRROR", server.url)
    progress = Recorder()
    check_arrays(load_dataset("mnist", progress=progress), arrays)
    cached = sources.keras_cache_dir() / "mnist.npz"
    assert cached.read_bytes() == raw
    assert files_in(cached.parent) == ["mnist.npz"]
    assert progress.calls[-1] == ("mnist.npz", len(raw), len(raw))
    assert server.requests == ["/files/mnist.npz"]

    dataset = read_dataset("mnist")
    check_arrays((dataset.train, dataset.test), arrays)
    assert "Keras cache" in dataset.source
    assert server.requests == ["/files/mnist.npz"]


def test_mirror_argument_overrides_the_variable(server, served_mnist):
    _, arrays = served_mnist
    dataset = read_dataset("mnist", mirror=server.url)
    check_arrays((dataset.train, dataset.test), arrays)
    assert f"downloaded from {server.url}" in dataset.source


def test_download_with_bad_checksum_leaves_cache_empty(server, served_mnist):
    server.route("mnist.npz", serve(b"not the npz"))
    with pytest.raises(DownloadError, match=re.escape(f"{server.url}mnist.npz: sha256 mismatch")) as caught:
        load_dataset("mnist", mirror=server.url)
    assert "MNIST_CLASSIFIER_DATA" in str(caught.value)
    assert files_in(sources.keras_cache_dir()) == []


def test_no_download_when_download_is_false(server, served_mnist):
    with pytest.raises(DataError, match="mnist not found in .*mnist.npz") as caught:
        load_dataset("mnist", mirror=server.url, download=False)
    assert type(caught.value) is DataError
    assert server.requests == []


def test_an_invalid_mirror_url_is_reported(tmp_path):
    with pytest.raises(DownloadError, match="not a valid download URL"):
        download_files("notaurl", [RemoteFile("a.bin", "0" * 64)], tmp_path / "deep" / "cache")
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone again


def test_downloaded_files_get_the_usual_permissions(server, tmp_path):
    import os
    import stat

    body = b"payload"
    server.route("a.bin", serve(body))
    (path,) = download_files(server.url, [RemoteFile("a.bin", sha(body))], tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
