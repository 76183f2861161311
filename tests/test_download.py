"""fetch_dataset against a local HTTP server on 127.0.0.1 (never any other address)."""

import errno
import io
import json
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgwang.core.errors import DataError
from imgwang.data.download import MARKER, fetch_dataset, is_complete
from imgwang.data.layout import load_layout

FILES = {  # a tiny Imagewang: 2 classes, val holds one of them, flat unsup
    "train/n02086240/n02086240_1.JPEG": b"j1",
    "train/n02086240/n02086240_2.JPEG": b"j2",
    "train/n01440764/n01440764_1.JPEG": b"j3",
    "val/n02086240/n02086240_9.JPEG": b"j4",
    "unsup/ILSVRC_1.JPEG": b"j5",
    "unsup/ILSVRC_2.png": b"j6",
    "unsup/ILSVRC_3.JPEG": b"j7",
}
COUNTS = {"train": 3, "unsup": 3, "val": 1}


def make_tarball(files: dict[str, bytes], top: str = "imagewang-160", extra: list[tarfile.TarInfo] = (),
                 level: int = 9) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=level) as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{top}/{rel}" if top else rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    return buffer.getvalue()


class Server:
    """Serves {path: bytes} on 127.0.0.1 from a thread and counts the requests."""

    def __init__(self, routes: dict[str, bytes]):
        self.routes, self.requests, self.missing_bytes = routes, [], 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                declared = len(body) + server.missing_bytes  # > len(body): a connection cut short
                self.send_response(200)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def serve(monkeypatch):
    # keep every request on loopback even where a proxy is configured
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    servers = []

    def start(routes):
        server = Server(routes)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_download_extract_mark_then_skip_when_present(tmp_path, serve, capsys):
    server = serve({"/imagewang-160.tgz": make_tarball(FILES)})
    url = server.url("/imagewang-160.tgz")

    root = fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS)

    assert root == tmp_path / "data" / "imagewang-160"
    assert is_complete(root) and (root / MARKER).is_file()
    assert (root / "unsup/ILSVRC_2.png").read_bytes() == b"j6"
    assert load_layout(root).counts() == COUNTS
    assert "download imagewang" in capsys.readouterr().err  # the tqdm byte bar was shown
    # nothing left beside the dataset: no .part file, no staging folder
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["archives.json", "imagewang-160"]
    assert server.requests == ["/imagewang-160.tgz"]

    again = fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS)
    assert again == root
    assert len(server.requests) == 1  # the second call made no request


def test_wrong_counts_fail_cleanly_and_a_retry_succeeds(tmp_path, serve):
    short = dict(list(FILES.items())[:-1])  # one unsup image missing
    server = serve({"/imagewang-160.tgz": make_tarball(short)})
    url = server.url("/imagewang-160.tgz")
    data_root = tmp_path / "data"

    with pytest.raises(DataError, match=r"unsup 2 images \(expected 3\)"):
        fetch_dataset("imagewang", data_root, url=url, expected_counts=COUNTS, progress=False)
    assert not is_complete(data_root / "imagewang-160")
    assert not (data_root / "imagewang-160").exists()
    assert list(data_root.iterdir()) == []  # bad download removed

    server.routes["/imagewang-160.tgz"] = make_tarball(FILES)
    root = fetch_dataset("imagewang", data_root, url=url, expected_counts=COUNTS, progress=False)
    assert is_complete(root) and load_layout(root).counts() == COUNTS
    assert len(server.requests) == 2  # the retry downloaded again from scratch


def test_archive_escaping_the_data_folder_is_refused(tmp_path, serve):
    evil = tarfile.TarInfo("imagewang-160/../../outside.txt")
    evil.size = 1
    server = serve({"/imagewang-160.tgz": make_tarball(FILES, extra=[evil])})
    with pytest.raises(DataError, match="outside the data folder"):
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                      expected_counts=COUNTS, progress=False)
    assert not (tmp_path / "outside.txt").exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_link_members_are_refused(tmp_path, serve):
    link = tarfile.TarInfo("imagewang-160/train/n01440764/x.JPEG")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    server = serve({"/imagewang-160.tgz": make_tarball(FILES, extra=[link])})
    with pytest.raises(DataError, match="link or special file"):
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                      expected_counts=COUNTS, progress=False)


def test_not_an_archive_and_http_errors_are_one_line_data_errors(tmp_path, serve):
    server = serve({"/imagewang-160.tgz": b"<html>not a tarball</html>"})
    with pytest.raises(DataError, match="not a readable .tgz archive"):
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                      expected_counts=COUNTS, progress=False)
    with pytest.raises(DataError, match="HTTP 404") as info:
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/missing.tgz"),
                      expected_counts=COUNTS, progress=False)
    assert "\n" not in str(info.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_wrong_known_size_is_refused(tmp_path, serve):
    body = make_tarball(FILES)
    server = serve({"/imagewang-160.tgz": body})
    with pytest.raises(DataError, match=f"has {len(body)} bytes, expected {len(body) + 1}"):
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                      expected_counts=COUNTS, progress=False, expected_bytes=len(body) + 1)


def test_download_cut_short_is_refused_and_cleaned_up(tmp_path, serve):
    server = serve({"/imagewang-160.tgz": make_tarball(FILES)})
    server.missing_bytes = 100
    with pytest.raises(DataError, match="was cut short"):
        fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                      expected_counts=COUNTS, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_names_the_url_and_where_to_put_the_folder(tmp_path, serve):
    url = f"http://127.0.0.1:{closed_port()}/imagewang-160.tgz"
    with pytest.raises(DataError) as info:
        fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"could not reach {url}" in message
    assert str(tmp_path / "data" / "imagewang-160") in message and "train/ val/ unsup/" in message
    assert "DATA=/path/to/folder" in message
    assert not (tmp_path / "data" / "imagewang-160").exists()


def test_folder_placed_by_hand_is_accepted_without_network(tmp_path):
    root = tmp_path / "data" / "imagewang-160"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    url = f"http://127.0.0.1:{closed_port()}/imagewang-160.tgz"  # would fail if it were contacted
    assert fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS) == root
    assert is_complete(root)

    (root / MARKER).unlink()
    (root / "val/n02086240/n02086240_9.JPEG").unlink()
    with pytest.raises(DataError, match=r"exists but is incomplete \(val 0 images \(expected 1\)\)"):
        fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS)


def flipped(body: bytes, inside: bytes) -> bytes:
    """The archive with one byte flipped inside `inside` (file data kept as is by compresslevel 0)."""
    at = body.index(inside)
    return body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1:]


def test_a_same_size_corrupted_archive_is_refused_and_nothing_is_complete(tmp_path, serve):
    """Level 0 stores the file data as it is: the flipped byte leaves a valid tar listing with the right
    counts and the right size, and only the gzip CRC-32 at the end of the stream tells."""
    body = make_tarball({**FILES, "unsup/ILSVRC_1.JPEG": b"jpeg-bytes-0123456789"}, level=0)
    bad = flipped(body, b"jpeg-bytes-0123456789")
    assert len(bad) == len(body)
    server = serve({"/imagewang-160.tgz": bad})
    data_root = tmp_path / "data"
    with pytest.raises(DataError, match="is corrupted .gzip stream: CRC check failed") as info:
        fetch_dataset("imagewang", data_root, url=server.url("/imagewang-160.tgz"), expected_counts=COUNTS,
                      progress=False, expected_bytes=len(body))
    assert "\n" not in str(info.value)
    assert not is_complete(data_root / "imagewang-160") and list(data_root.iterdir()) == []


def test_the_first_download_pins_its_sha256_and_a_different_archive_is_refused_later(tmp_path, serve, capsys):
    good = make_tarball(FILES)
    server = serve({"/imagewang-160.tgz": good})
    data_root = tmp_path / "data"
    root = fetch_dataset("imagewang", data_root, url=server.url("/imagewang-160.tgz"), expected_counts=COUNTS,
                         progress=False)
    assert "note: no published SHA-256" in capsys.readouterr().err
    pin = json.loads((data_root / "archives.json").read_text())[server.url("/imagewang-160.tgz")]
    assert pin["bytes"] == len(good) and len(pin["sha256"]) == 64
    assert json.loads((root / MARKER).read_text())["sha256"] == pin["sha256"]

    import shutil

    shutil.rmtree(root)  # fetched again later: a valid archive of another content
    server.routes["/imagewang-160.tgz"] = make_tarball({**FILES, "unsup/ILSVRC_1.JPEG": b"j8"})
    with pytest.raises(DataError, match="differs from the pinned"):
        fetch_dataset("imagewang", data_root, url=server.url("/imagewang-160.tgz"), expected_counts=COUNTS,
                      progress=False)
    assert not (data_root / "imagewang-160").exists()


def test_fastai_archives_are_pinned_by_published_size_and_head_md5(tmp_path, serve, monkeypatch):
    from imgwang.data import download

    body = make_tarball(FILES)
    server = serve({"/imagewang-160.tgz": body})
    url = server.url("/imagewang-160.tgz")
    monkeypatch.setitem(download.PUBLISHED, url, (len(body), "0" * 32))
    with pytest.raises(DataError, match="MD5 of its first MiB"):
        fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS, progress=False)
    import hashlib

    monkeypatch.setitem(download.PUBLISHED, url, (len(body), hashlib.md5(body[:1 << 20]).hexdigest()))
    assert is_complete(fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS, progress=False))
    assert set(download.PUBLISHED) >= set(download.DATASETS.values())  # every fastai archive is pinned


def test_two_fetches_of_one_archive_at_once_download_it_once(tmp_path, serve):
    server = serve({"/imagewang-160.tgz": make_tarball(FILES)})
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_dataset("imagewang", tmp_path / "data", url=server.url("/imagewang-160.tgz"),
                                         expected_counts=COUNTS, progress=False))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(results) == 2 and is_complete(results[0])
    assert server.requests == ["/imagewang-160.tgz"]  # the second waited for the first, then found it complete


def test_no_room_on_disk_is_one_line(tmp_path, serve, monkeypatch):
    from imgwang.data import download

    server = serve({"/imagewang-160.tgz": make_tarball(FILES)})
    url = server.url("/imagewang-160.tgz")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(DataError, match="not enough disk space"):
        fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS, progress=False)
    monkeypatch.undo()

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "_extract", full)
    with pytest.raises(DataError, match="disk full while fetching") as info:
        fetch_dataset("imagewang", tmp_path / "data", url=url, expected_counts=COUNTS, progress=False)
    assert "\n" not in str(info.value) and list((tmp_path / "data").iterdir()) == []
