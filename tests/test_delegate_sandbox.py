"""Model-written code runs contained: each limit of mechlab.delegate.sandbox is shown to hold."""

import socket
import sys

import pytest

from mechlab.delegate import DOMAINS
from mechlab.delegate.sandbox import Limits, network_isolation, run_contained


def run_py(tmp_path, code, **limits):
    (tmp_path / "m.py").write_text(code)
    return run_contained([sys.executable, "-I", "m.py"], tmp_path, Limits(**{"wall_seconds": 20.0, **limits}))


def test_a_cpu_loop_is_killed_by_the_cpu_limit(tmp_path):
    r = run_py(tmp_path, "while True:\n    pass\n", cpu_seconds=1)
    assert r.returncode < 0 and not r.timed_out  # SIGXCPU (or SIGKILL at the hard limit), before the wall clock


def test_a_memory_hog_fails(tmp_path):
    r = run_py(tmp_path, "x = bytearray(2 << 30)\nprint('allocated')\n", memory_bytes=512 << 20)
    assert r.returncode != 0 and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_an_output_flood_is_cut_at_the_limit(tmp_path):
    r = run_py(tmp_path, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", output_bytes=100_000)
    assert r.returncode != 0 and r.truncated and len(r.stdout) == 100_000


def test_the_wall_clock_stops_a_sleeper(tmp_path):
    r = run_py(tmp_path, "import time\ntime.sleep(60)\n", wall_seconds=1.0)
    assert r.timed_out and r.returncode < 0


def test_the_environment_is_cleared_and_stdin_closed(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    code = ("import os, sys\nprint(sorted(k for k in os.environ if 'KEY' in k or 'TOKEN' in k))\n"
            "print(repr(sys.stdin.read()))\n")
    r = run_py(tmp_path, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "''"] and "sk-secret" not in r.stdout


def test_the_network_is_refused_where_the_machine_allows_it(tmp_path):
    kind, _ = network_isolation()
    if kind == "none":
        pytest.skip("no bwrap or unshare -rn here: runs are not network-isolated (said by network_isolation())")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')\n"
        r = run_py(tmp_path, code)
        assert r.isolation == kind and r.returncode != 0 and "connected" not in r.stdout
        assert "Error" in r.stderr  # OSError: network unreachable / connection refused
        open_run = run_contained([sys.executable, "-I", "m.py"], tmp_path, network=True)
        assert open_run.stdout.strip() == "connected"  # the same program reaches the port without isolation
    finally:
        server.close()


def test_a_missing_program_or_no_command_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such program"):
        run_contained(["/nonexistent/python"], tmp_path)
    with pytest.raises(ValueError, match="needs a command"):
        run_contained([], tmp_path)


def test_without_namespaces_the_fallback_says_so(monkeypatch):
    import mechlab.delegate.sandbox as sandbox

    sandbox.network_isolation.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.warns(RuntimeWarning, match="without network isolation"):
            assert sandbox.network_isolation() == ("none", ())
    finally:
        sandbox.network_isolation.cache_clear()


def test_the_python_scorer_runs_answers_contained(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    py = DOMAINS["python"]
    seed = {"m.py": "print('hi')\n"}
    leak = {"m.py": "import os\nprint(os.environ.get('OPENAI_API_KEY', 'hi'))\n"}
    assert py.similarity(seed, leak) == 1.0  # the key is not there to print
    assert py.similarity(seed, {"m.py": "input()\nprint('hi')\n"}) == pytest.approx(0.1)  # stdin closed: EOFError
