"""Commands that talk to a running server say in one line when nothing answers at the address, or when the
address is not a gRPC host:port, and exit 2 (reload used to print a failure per model and exit 0)."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from tritonforge.cli.main import main
from tritonforge.errors import ServerError
from tritonforge.repository.manifest import MANIFEST_NAME
from tritonforge.server.reach import require_server
from tritonforge.server.reload import reload_build


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    roles = {"m_onnx_fp32": "rung", "m": "public"}
    for model in roles:
        (root / model / "1").mkdir(parents=True)
        (root / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    manifest = {
        "name": "m",
        "tritonforge_version": "0",
        "fingerprint": "f",
        "spec_hash": "s",
        "inputs": {},
        "tools": {},
        "version": 1,
    }
    (root / "m" / MANIFEST_NAME).write_text(json.dumps({**manifest, "roles": {k: {"role": v} for k, v in roles.items()}}))
    return root


def test_nothing_answering_is_one_error_naming_the_address(repo):
    url = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ServerError, match=f"no Triton server answers gRPC at {url} .*tritonforge serve"):
        require_server(url)
    with pytest.raises(ServerError, match=f"no Triton server answers gRPC at {url}"):
        reload_build(url, repo, "m")


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://localhost:8000", "e.g. 'localhost:8001'"),
        ("https://triton.example:443/v2", "e.g. 'triton.example:8001'"),
        ("localhost", "give host:port"),
        ("h:0", "give host:port"),
    ],
)
def test_an_address_that_is_not_grpc_host_port_is_refused_before_any_connection(url, says):
    with pytest.raises(ServerError, match="--url") as err:
        require_server(url, timeout=0.01)
    assert says in str(err.value)


def test_reload_with_no_server_exits_2_with_one_line(repo, monkeypatch, capsys):
    url = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(sys, "argv", ["tritonforge", "reload", "m", "--url", url, "--repo", str(repo)])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    assert done.value.code == 2
    assert captured.err.strip().count("\n") == 0 and url in captured.err and "failed to connect" in captured.err
    assert "keeps its previous version" not in captured.err + captured.out
