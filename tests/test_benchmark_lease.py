"""benchmarks/lease.sh: a command started detached outlives the call that started it; wait reports its
state and log; collect packs what it wrote under benchmarks/ (and nothing older)."""

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "lease.sh"
pytestmark = pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid (util-linux)")


def lease(tmp_path, *args):
    env = {"PATH": "/usr/bin:/bin", "LEASE_DIR": str(tmp_path / "state")}
    done = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def test_start_wait_collect(tmp_path):
    (tmp_path / "benchmarks" / "rows").mkdir(parents=True)
    (tmp_path / "benchmarks" / "rows" / "old.json").write_text("{}")
    # The job waits for a file the test writes: it is still running when start returns, however loaded
    # the machine.
    job = "until [ -f go ]; do sleep 0.1; done; echo trained; echo '{}' > benchmarks/rows/new.json; exit 3"
    rc, out = lease(tmp_path, "start", "run1", "--", "bash", "-c", job)
    assert rc == 0 and "run1 running" in out  # start returned while the job goes on
    rc, out = lease(tmp_path, "start", "run1", "--", "true")
    assert rc == 1 and "already running" in out
    (tmp_path / "go").touch()
    rc, out = lease(tmp_path, "wait", "run1", "20")
    assert "trained" in out and "finished, exit status 3" in out
    rc, out = lease(tmp_path, "collect", "run1", str(tmp_path / "out"))
    with tarfile.open(tmp_path / "out" / "run1.tgz") as tar:
        assert tar.getnames() == ["benchmarks/rows/new.json"]
    assert "trained" in (tmp_path / "out" / "run1.log").read_text()


def test_bad_calls_are_one_line_errors(tmp_path):
    rc, out = lease(tmp_path, "start", "a b", "--", "true")
    assert rc == 2 and "NAME must be" in out
    rc, out = lease(tmp_path, "wait", "never", "1")
    assert rc == 1 and "nothing named never was started" in out
    for args in (("start", "x", "true"), (), ("wait", "x", "soon"), ("collect", "x")):
        rc, out = lease(tmp_path, *args)
        assert rc == 2 and out.startswith("usage") and out.count("\n") == 1, args
