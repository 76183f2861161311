"""Experiment tracking: modes, offline archives without secrets, and never killing a run."""

import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from test_train_loop import make_world, quick_fit, single_thread  # noqa: F401  (autouse fixture)

from imgwang.core.errors import ConfigError
from imgwang.core.secrets import scrub_secrets
from imgwang.train import Tracker, make_tracker
from imgwang.train.tracking import CometTracker, resolve_mode

FAKE_KEY = "fakeCometKey0123456789abcdefXYZ"


def all_bytes(log_dir: Path):
    """Every file under log_dir, and every member of every zip archive (Comet offline writes zips)."""
    for path in log_dir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        yield path.name, data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    yield f"{path.name}:{name}", archive.read(name)


def test_modes_resolve_from_the_key(monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    assert resolve_mode("auto") == "offline"
    assert isinstance(make_tracker("off"), Tracker) and make_tracker("off").mode == "off"
    with pytest.raises(ConfigError, match="COMET=online needs COMET_API_KEY"):
        make_tracker("online")
    with pytest.raises(ConfigError, match="unknown COMET"):
        make_tracker("loud")
    monkeypatch.setenv("COMET_API_KEY", FAKE_KEY)
    assert resolve_mode("auto") == "online"


def test_secrets_are_scrubbed_by_name_and_value(monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", FAKE_KEY)
    params = {"lr": 0.1, "api_key": "x", "COMET_API_KEY": FAKE_KEY, "note": f"run with {FAKE_KEY}",
              "nested": {"token": "t", "arch": "resnet18", "cmd": f"--key {FAKE_KEY}"}}
    assert scrub_secrets(params) == {"lr": 0.1, "nested": {"arch": "resnet18"}}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # comet_ml's own sentry_sdk use
def test_offline_writes_under_log_dir_and_never_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMET_API_KEY", FAKE_KEY)
    tracker = make_tracker("offline", project="imgwang", run_name="test-run", log_dir=tmp_path)
    assert tracker.mode == "offline"
    tracker.log_params({"api_key": FAKE_KEY, "comment": f"key is {FAKE_KEY}", "arch": "tinyconv"})
    model, obj, train, val = make_world()
    quick_fit(model, obj, train, val, epochs=1, grad_stats=True, tracker=tracker)
    print(f"a careless print of {FAKE_KEY}")  # stdout capture is off: this must not reach the archive
    capsys.readouterr()
    tracker.end()
    said = capsys.readouterr()
    archives = list(tmp_path.glob("*.zip"))
    assert len(archives) == 1 and f"comet offline: archive {archives[0]}" in said.out  # one line names it
    contents = dict(all_bytes(tmp_path))
    assert contents, "offline mode wrote nothing under log_dir"
    everything = b"".join(contents.values())
    assert b"tinyconv" in everything and b"train_loss" in everything  # params and metrics were recorded
    leaks = [name for name, data in contents.items() if FAKE_KEY.encode() in data]
    assert leaks == []


def test_comet_that_cannot_import_falls_back_to_no_tracking(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "comet_ml", None)  # makes `import comet_ml` raise ImportError
    with pytest.warns(UserWarning, match="comet_ml is not usable"):
        tracker = make_tracker("offline", log_dir=tmp_path)
    assert type(tracker) is Tracker
    tracker.log_metrics({"loss": 1.0}, epoch=1)  # no-op, no error


def test_a_failing_tracker_warns_once_and_training_goes_on():
    class BrokenExperiment:
        calls = 0

        def log_metrics(self, *a, **k):
            BrokenExperiment.calls += 1
            raise OSError("disk full")

        log_parameters = log_figure = end = log_metrics

    tracker = CometTracker(BrokenExperiment(), "offline")
    model, obj, train, val = make_world()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = quick_fit(model, obj, train, val, epochs=2, tracker=tracker)
        tracker.end()
    assert len(history) == 2
    assert sum("experiment tracking stopped" in str(w.message) for w in caught) == 1
    assert BrokenExperiment.calls == 1  # disabled after the first failure


class RefusingComet:
    """A Comet server on 127.0.0.1 that is alive but answers 401 to everything else, echoing the key it got
    (as a careless server might): comet_ml logs such an answer at ERROR level with a traceback."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                requests.append(self.path)
                if "isAlive" in self.path:
                    code, body = 200, b'{"version": "3.40.0"}'
                else:
                    code, body = 401, f'{{"msg": "Invalid apiKey {FAKE_KEY}", "code": 401}}'.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/clientlib/"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_refused_key_falls_back_to_offline_in_one_line_without_the_key(tmp_path, monkeypatch, capfd):
    server = RefusingComet()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("COMET_URL_OVERRIDE", server.url)
    monkeypatch.setenv("COMET_API_KEY", FAKE_KEY)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = make_tracker("online", log_dir=tmp_path)
            tracker.log_metrics({"loss": 1.0}, epoch=1)
            tracker.end()
    finally:
        server.httpd.shutdown()
    assert any("/logger/add/run" in r for r in server.requests)  # the 401 really came from our server
    said = [str(w.message) for w in caught if "Comet online" in str(w.message)]
    assert len(said) == 1 and "refused COMET_API_KEY (HTTP 401)" in said[0] and "falling back to offline" in said[0]
    assert tracker.mode == "offline" and list(tmp_path.glob("*.zip"))
    out = capfd.readouterr()
    everything = out.out + out.err + "".join(str(w.message) for w in caught)
    assert FAKE_KEY not in everything and "Invalid apiKey" not in everything and "Traceback" not in everything
    assert [name for name, data in all_bytes(tmp_path) if FAKE_KEY.encode() in data] == []
