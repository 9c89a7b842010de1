"""Downloads from mirrors served on 127.0.0.1 by the test: retries, failures, no partial files."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import IDX_NAMES, DataFile, DatasetInfo, encode_idx, fetch, load_dataset
from cnnlab.errors import DataError

RNG = np.random.default_rng(1)
ARRAYS = (
    RNG.integers(0, 256, size=(20, 6, 6), dtype=np.uint8),
    np.arange(20, dtype=np.uint8) % 4,
    RNG.integers(0, 256, size=(8, 6, 6), dtype=np.uint8),
    np.arange(8, dtype=np.uint8) % 4,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; under /truncated/ it promises the whole file but sends half, then hangs up."""

    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        if not self.path.startswith("/truncated/"):
            return super().do_GET()
        body = (Path(self.directory) / "good" / Path(self.path).name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www: good/ (right files), bad/ (altered)."""
    root = tmp_path / "www"
    for folder in ("good", "bad"):
        (root / folder).mkdir(parents=True)
    for name, array in zip(IDX_NAMES, ARRAYS, strict=True):
        content = encode_idx(array)
        altered = content[:-1] + bytes([content[-1] ^ 0xFF])  # same structure, other bytes
        (root / "good" / f"{name}.gz").write_bytes(gzip.compress(content))
        (root / "bad" / f"{name}.gz").write_bytes(gzip.compress(altered))
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.requests = handler.requests
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_info(*mirrors: str) -> DatasetInfo:
    files = tuple(
        DataFile(name, len(encode_idx(a)), sha256=hashlib.sha256(encode_idx(a)).hexdigest())
        for name, a in zip(IDX_NAMES, ARRAYS, strict=True)
    )
    return DatasetInfo("tiny", "test data", "", mirrors=mirrors, files=files, classes=4)


def files_under(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_checksum_failure_on_first_mirror_retries_the_next(server, tmp_path):
    info = tiny_info(f"{server.base}/bad/", f"{server.base}/good/")
    lines = []
    fetched = fetch(info, data_dir=tmp_path / "data", report=lines.append)
    assert [item.path.parent for item in fetched] == [tmp_path / "data" / "tiny"] * 4
    assert all(item.url.startswith(f"{server.base}/good/") for item in fetched)
    assert sum("bad content" in line for line in lines) == 4
    dataset = load_dataset(info, data_dir=tmp_path / "data", offline=True)
    assert np.array_equal(dataset.test_images[..., 0], ARRAYS[2])
    assert dataset.classes == 4


def test_unreachable_mirror_is_skipped_for_the_next(server, tmp_path, closed_port):
    info = tiny_info(f"http://127.0.0.1:{closed_port}/", f"{server.base}/good/")
    lines = []
    fetch(info, data_dir=tmp_path, report=lines.append)
    assert any("unreachable (Connection refused)" in line for line in lines)
    assert files_under(tmp_path / "tiny") == sorted(f"{name}.gz" for name in IDX_NAMES)


def test_all_mirrors_failing_is_one_line_saying_what_each_did(server, tmp_path, closed_port):
    info = tiny_info(
        f"http://127.0.0.1:{closed_port}/", f"{server.base}/missing/", f"{server.base}/bad/"
    )
    with pytest.raises(DataError) as raised:
        fetch(info, data_dir=tmp_path / "data")
    message = str(raised.value)
    assert "\n" not in message
    assert "from any of its 3 mirrors" in message
    assert "unreachable" in message
    assert "HTTP 404" in message
    assert "bad content (SHA-256 of the decompressed content is" in message
    assert message.endswith("or put the files in a directory and pass --data-dir DIR")
    assert files_under(tmp_path / "data") == []


def test_connection_dropped_mid_file_leaves_no_partial_file(server, tmp_path):
    info = tiny_info(f"{server.base}/truncated/")
    with pytest.raises(DataError, match=r"ubyte\.gz: connection closed after \d+ of \d+ bytes"):
        fetch(info, data_dir=tmp_path / "data")
    assert files_under(tmp_path / "data") == []


def test_after_a_failed_download_the_next_load_does_not_take_a_partial_file(server, tmp_path):
    with pytest.raises(DataError):
        fetch(tiny_info(f"{server.base}/truncated/"), data_dir=tmp_path)
    with pytest.raises(DataError, match="not found in .* offline mode forbids downloading"):
        load_dataset(tiny_info(f"{server.base}/good/"), data_dir=tmp_path, offline=True)


def test_stalled_mirror_is_left_after_the_timeout(server, tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        info = tiny_info(f"http://127.0.0.1:{silent.getsockname()[1]}/", f"{server.base}/good/")
        lines = []
        fetch(info, data_dir=tmp_path, timeout=0.2, report=lines.append)
    assert any("timed out" in line for line in lines)


def test_offline_mode_from_environment_never_downloads(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    with pytest.raises(
        DataError, match="pass --data-dir DIR with local copies, or allow downloads"
    ):
        fetch(tiny_info(f"{server.base}/good/"), data_dir=tmp_path)
    assert server.requests == []


def test_present_files_are_verified_not_downloaded_again(server, tmp_path):
    info = tiny_info(f"{server.base}/good/")
    fetch(info, data_dir=tmp_path)
    requests_after_first = len(server.requests)
    again = fetch(info, data_dir=tmp_path)
    assert [item.url for item in again] == [None] * 4
    assert len(server.requests) == requests_after_first


def test_fetch_refuses_a_corrupt_local_copy_instead_of_hiding_it(server, tmp_path):
    info = tiny_info(f"{server.base}/good/")
    fetch(info, data_dir=tmp_path)
    path = tmp_path / "tiny" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match="delete it and run `cnnlab data fetch tiny`"):
        fetch(info, data_dir=tmp_path)


def test_a_place_downloads_cannot_go_and_a_bad_timeout_are_one_error(server, tmp_path):
    info = tiny_info(f"{server.base}/good/")
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    with pytest.raises(DataError, match=r"cannot write downloads into .*pass a writable"):
        fetch(info, data_dir=not_a_directory)
    for timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(DataError, match=r"timeout must be a number of seconds > 0"):
            fetch(info, data_dir=tmp_path, timeout=timeout)
    assert server.requests == []


def test_a_mirror_serving_a_gzip_bomb_is_left_without_decompressing_it_all(server, tmp_path):
    root = Path(server.RequestHandlerClass.keywords["directory"]) / "bomb"
    root.mkdir()
    for name in IDX_NAMES:
        (root / f"{name}.gz").write_bytes(gzip.compress(bytes(50_000_000)))  # 50 MB of zeros
    lines = []
    info = tiny_info(f"{server.base}/bomb/", f"{server.base}/good/")
    fetched = fetch(info, data_dir=tmp_path, report=lines.append)
    # Refused from the first 4 bytes (zeros are no IDX magic number), never read to the end.
    assert sum("IDX magic number is 0x00000000" in line for line in lines) == 4
    assert all(item.url.startswith(f"{server.base}/good/") for item in fetched)


def test_a_mirror_serving_another_datasets_file_is_named_without_data_dir_advice(
    server, tmp_path, monkeypatch
):
    altered = encode_idx(ARRAYS[0])[:-1] + bytes([encode_idx(ARRAYS[0])[-1] ^ 0xFF])
    other = {hashlib.sha256(altered).hexdigest(): "other's train-images-idx3-ubyte"}
    monkeypatch.setattr("cnnlab.data.cache.KNOWN_CONTENT", other)
    lines = []
    fetch(
        tiny_info(f"{server.base}/bad/", f"{server.base}/good/"),
        data_dir=tmp_path,
        report=lines.append,
    )
    refused = next(line for line in lines if "bad content" in line)
    assert "this is other's train-images-idx3-ubyte, not tiny's" in refused
    assert "--data-dir" not in refused  # the mirror is wrong, not the user's directory


def test_a_day_old_partial_download_is_removed_and_a_fresh_one_left_alone(server, tmp_path):
    # A download killed outright (SIGKILL, power loss) cannot remove its temporary file.
    folder = tmp_path / "tiny"
    folder.mkdir()
    stale = folder / ".train-images-idx3-ubyte.abc123.part"
    fresh = folder / ".train-images-idx3-ubyte.def456.part"  # maybe another process's, now
    for part in (stale, fresh):
        part.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    fetch(tiny_info(f"{server.base}/good/"), data_dir=tmp_path)
    assert not stale.exists() and fresh.exists()
