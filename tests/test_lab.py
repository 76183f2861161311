"""make lab: --allow-root only as root, all interfaces and no browser in a container, the address printed."""

import lab  # bin/lab.py


def test_allow_root_only_for_root_and_no_browser_where_there_is_none(tmp_path):
    as_root = lab.lab_command("jupyter", tmp_path, "0.0.0.0", 8888, as_root=True, browser=False)
    assert as_root[:2] == ["jupyter", "lab"] and "--allow-root" in as_root and "--no-browser" in as_root
    assert f"--ServerApp.root_dir={tmp_path}" in as_root and "--ip=0.0.0.0" in as_root and "--port=8888" in as_root
    assert "--ServerApp.port_retries=0" in as_root  # a busy port fails instead of moving away from the printed one
    user = lab.lab_command("jupyter", tmp_path, "127.0.0.1", 9000, as_root=False, browser=True)
    assert "--allow-root" not in user and "--no-browser" not in user
    assert not any("token" in part for part in as_root + user)  # the token travels in the environment


def test_the_printed_address_carries_the_token(monkeypatch, capsys):
    monkeypatch.setenv("JUPYTER_TOKEN", "abc123")
    monkeypatch.setattr(lab, "in_container", lambda: True)
    monkeypatch.setattr(lab, "is_root", lambda: True)
    assert lab.main(["--port", "9999", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "as root (--allow-root)" in out and "listening on 0.0.0.0:9999" in out
    assert "http://127.0.0.1:9999/lab?token=abc123" in out and "--allow-root --no-browser" in out
    monkeypatch.setattr(lab, "in_container", lambda: False)
    monkeypatch.setattr(lab, "is_root", lambda: False)
    monkeypatch.delenv("JUPYTER_TOKEN")
    assert lab.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "listening on 127.0.0.1:8888" in out and "--allow-root" not in out
    token = out.split("token=")[1].split()[0]
    assert len(token) == 48 and "--no-browser" not in out  # a fresh random token; a desktop opens its browser
    assert lab.main(["--port", "70000", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: LAB_PORT=70000")
