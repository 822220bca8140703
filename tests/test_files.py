"""Input files read within a limit and refused unread when they are not regular files; outputs that replace only regular files."""

import os
import re

import pytest

from mnist_classifier.errors import ImageError, OutputError
from mnist_classifier.system.files import atomic_path, read_input, write_text_atomic
from tests.test_cli import fake_device, python_capped

_READ_EACH = """
import importlib, sys
from mnist_classifier.errors import MnistClassifierError
module, name = sys.argv[1].split(":")
read = getattr(importlib.import_module(module), name)
for path in sys.argv[2:]:
    try:
        read(path)
    except MnistClassifierError as exc:
        print(exc)
"""


def refused_unread(reader: str, *paths) -> list[str]:
    """The error each path gets from ``reader`` ("module:function"), read in a process capped at 1 GiB and 30 s.

    A reader that reads without bound (``/dev/zero``) runs out of the cap, and one
    that opens a FIFO to read waits for a writer: both fail the test, not the machine.
    """
    result = python_capped(_READ_EACH, reader, *paths, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("reader", "what"),
    [("mnist_classifier.inference.images:read_image", "image file"), ("mnist_classifier.config:read_config_file", "config file")],
)
def test_fifos_and_dev_zero_are_refused_unread(tmp_path, reader, what):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nobody writes to it
    assert refused_unread(reader, fifo, "/dev/zero") == [
        f"{fifo}: is a FIFO (named pipe), expected a regular {what}",
        f"/dev/zero: is a character device, expected a regular {what}",
    ]


def test_devices_folders_and_missing_files_are_named(tmp_path):
    device = fake_device(tmp_path / "null")
    expected = {device: "is a character device, expected a regular image file", tmp_path: "is a folder, expected a regular image file",
                tmp_path / "gone": "image file not found"}  # fmt: skip
    for path, message in expected.items():
        with pytest.raises(ImageError, match=f"^{re.escape(str(path))}: {message}$"):
            read_input(path, 1000, ImageError, "image file")


def test_at_most_limit_plus_one_bytes_are_read_whatever_the_size_says(tmp_path):
    # /proc files are regular files whose size reads as 0
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(ImageError, match="^/proc/self/status: over the 10-byte limit$"):
        read_input("/proc/self/status", 10, ImageError, "image file")
    (tmp_path / "small").write_bytes(b"x" * 10)
    assert read_input(tmp_path / "small", 10, ImageError, "image file") == b"x" * 10
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(ImageError, match="big: 11 bytes is over the 10-byte limit"):
        read_input(tmp_path / "big", 10, ImageError, "image file")


def test_outputs_replace_only_regular_files(tmp_path):
    device = fake_device(tmp_path / "device")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "folder").mkdir()
    for target, kind in ((device, "a character device"), (fifo, "a FIFO (named pipe)"), (tmp_path / "folder", "a folder")):
        with pytest.raises(OutputError, match=f"^{re.escape(str(target))}: is {re.escape(kind)}: an output replaces only a regular file$"):
            write_text_atomic(target, "text")
    assert device.is_char_device() and fifo.is_fifo() and (tmp_path / "folder").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device", "fifo", "folder"]  # no temporary left
    write_text_atomic(tmp_path / "plain.txt", "old")
    write_text_atomic(tmp_path / "plain.txt", "new")
    assert (tmp_path / "plain.txt").read_text() == "new"


def test_a_missing_folder_is_named_before_anything_is_written(tmp_path):
    target = tmp_path / "missing" / "out.png"
    with pytest.raises(OutputError, match=f"^{target}: folder {target.parent} does not exist$"):
        with atomic_path(target):
            pytest.fail("nothing may be written")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file/out.png: cannot write here"):
        write_text_atomic(tmp_path / "file" / "out.png", "text")


def test_something_put_in_the_way_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OutputError, match="is a FIFO"):
        with atomic_path(target) as temp:
            temp.write_text("text")
            os.mkfifo(target)
    assert target.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
