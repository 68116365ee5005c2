"""The image's entrypoint (deploy/docker-entrypoint.sh), run here as Docker would run it: as
root it drops to the unprivileged user, keeping CAP_SYS_ADMIN (for netns vantages) only when
the container was given it; as a plain user it just runs the command. No Docker engine here:
the script itself is what is tested, with `nobody` standing in for the image's `monitor`."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ENTRYPOINT = Path(__file__).resolve().parent.parent / "deploy" / "docker-entrypoint.sh"
CAP_SYS_ADMIN = 1 << 21
SHOW = ["sh", "-c", "id -u; grep -E '^Cap(Eff|Amb):' /proc/self/status"]


def run(*wrapper: str) -> tuple[int, int, int]:
    """(uid, effective caps, ambient caps) of the command the entrypoint starts."""
    done = subprocess.run([*wrapper, str(ENTRYPOINT), *SHOW], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MONITOR_USER": "nobody"}, cwd="/")
    assert done.returncode == 0, done.stderr
    uid, eff, amb = done.stdout.split("\n")[:3]
    return int(uid), int(eff.split()[1], 16), int(amb.split()[1], 16)


def test_root_with_the_capability_keeps_cap_sys_admin_alone() -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv (util-linux)")
    uid, effective, ambient = run()
    assert uid == pwd.getpwnam("nobody").pw_uid
    assert effective == CAP_SYS_ADMIN and ambient == CAP_SYS_ADMIN


def test_root_without_the_capability_keeps_nothing() -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv (util-linux)")
    uid, effective, ambient = run("setpriv", "--bounding-set=-sys_admin", "--")  # a container without --cap-add SYS_ADMIN
    assert uid == pwd.getpwnam("nobody").pw_uid and effective == 0 and ambient == 0


def test_a_plain_user_runs_the_command_as_is() -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv (util-linux)")
    nobody = pwd.getpwnam("nobody")
    uid, effective, _ = run("setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--")
    assert uid == nobody.pw_uid and effective == 0
