"""devstack.moto: the local S3 starts, answers, stops; a server that cannot start says so."""

import sys
import urllib.request

import pytest

from devstack.moto import MotoServer, free_port


def test_moto_server_with_a_custom_command_serves_s3_and_stops():
    # The form a patched server (infra/local/moto_shim.py) would use: an interpreter and a script.
    server = MotoServer(command=[sys.executable, "-c", "from moto.server import main; main()"])
    with server:
        with urllib.request.urlopen(server.endpoint + "/moto-api/", timeout=5) as r:
            assert r.status == 200
        proc = server.proc
    assert proc is not None and proc.poll() is not None  # stopped and reaped


def test_a_server_that_exits_at_start_is_an_error_not_a_hang(tmp_path):
    log = open(tmp_path / "moto.log", "w")
    server = MotoServer(free_port(), command=[sys.executable, "-c", "import sys; print('no'); sys.exit(3)"], log=log)
    with pytest.raises(RuntimeError, match="status 3"):
        server.start(timeout=20)
    log.close()
    assert "no" in (tmp_path / "moto.log").read_text()
