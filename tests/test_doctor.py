"""monitor doctor's pure parts and its command line (the network parts run in the censor lab:
tests/test_doctor_lab.py): the Go environment as the go command reads it, go.mod and go.sum,
the hops of a plan with Go's semantics, git's insteadOf rewriting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.doctor.goenv import GoEnv, match_patterns, no_proxy_matches, read_git_rewrites, read_goenv, redact
from monitor.doctor.gomod import GoModError, Requirement, parse_module_arg, read_gomod, read_gosum, representative
from monitor.doctor.plan import (
    direct_target,
    git_transport,
    https_equivalent,
    make_plan,
    parse_go_import,
    parse_gosumdb,
    ssh_target,
)
from monitor.doctor.goenv import Rewrite
from tests.conftest import require

GO = shutil.which("go")
GIT = shutil.which("git")


def test_environment_without_go_takes_gos_defaults():
    env = read_goenv({"PATH": "/nonexistent", "GOPRIVATE": "corp.example/*", "https_proxy": "proxy.corp:3128"})
    assert (env.goproxy, env.gosumdb, env.source) == ("https://proxy.golang.org,direct", "sum.golang.org", "environment")
    assert env.gonoproxy == env.gonosumdb == "corp.example/*"  # GOPRIVATE is their default
    assert env.http_proxy_for("https://proxy.golang.org/x") == "http://proxy.corp:3128"  # lower case read, http:// assumed
    assert env.http_proxy_for("http://plain.example/") is None  # HTTP_PROXY unset


def test_go_env_is_what_the_go_command_reports(tmp_path):
    require(GO is not None, "the go command is not installed (Debian: golang-go)")
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GOPROXY": "https://a.example|direct", "GOPRIVATE": "x.example",
               "GONOSUMDB": "y.example", "GOTOOLCHAIN": "local"}
    env = read_goenv(environ)
    assert env.source.startswith("go env (go")
    assert (env.goproxy, env.gonoproxy, env.gonosumdb, env.gosumdb) == ("https://a.example|direct", "x.example", "y.example", "sum.golang.org")
    # `go env -w` settings count too: the environment alone would miss them.
    subprocess.run([GO, "env", "-w", "GOSUMDB=sum.golang.google.cn"], env=environ, check=True, capture_output=True, timeout=30)
    assert read_goenv(environ).gosumdb == "sum.golang.google.cn"


@pytest.mark.parametrize("patterns,path,matches", [
    ("example.com", "example.com/a/b", True),
    ("example.com/*", "example.com/a/b", True),
    ("example.com/*", "example.com", False),
    ("*.corp.example", "git.corp.example/team/x", True),
    ("*.corp.example", "corp.example/x", False),
    ("github.com/org", "github.com/organisation/x", False),
    (" ,github.com/org/x ,", "github.com/org/x/v2", True),
    ("github.com/o?g", "github.com/org", True),
    ("github.com/[^a]rg", "github.com/org", True),
    ("", "example.com", False),
])
def test_glob_prefix_patterns_as_gonoproxy_matches(patterns, path, matches):
    assert match_patterns(patterns, path) is matches


@pytest.mark.parametrize("no_proxy,host,port,matches", [
    ("*", "a.example", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "sub.example.com", 443, True),
    (".example.com", "example.com", 443, False),
    (".example.com", "sub.example.com", 443, True),
    ("example.com:8443", "example.com", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("other.example", "example.com", 443, False),
])
def test_no_proxy(no_proxy, host, port, matches):
    assert no_proxy_matches(no_proxy, host, port) is matches


def test_proxy_credentials_never_shown():
    env = GoEnv(https_proxy="http://alice:s3cret@proxy.corp:3128")
    assert "s3cret" not in json.dumps(env.settings()) and redact(env.https_proxy) == "http://proxy.corp:3128"


def test_gosumdb_forms():
    assert parse_gosumdb("off") is None
    assert parse_gosumdb("sum.golang.org").base == "https://sum.golang.org"
    assert parse_gosumdb("sum.golang.google.cn").base == "https://sum.golang.google.cn"
    db = parse_gosumdb("sum.lab+8a35168c+AULF https://sum.lab:8443")
    assert (db.name, db.key, db.base) == ("sum.lab", "sum.lab+8a35168c+AULF", "https://sum.lab:8443")
    with pytest.raises(ValueError):
        parse_gosumdb("a b c")


def test_plan_follows_gonoproxy_and_gonosumdb():
    env = GoEnv(goproxy="https://a.example,https://b.example|direct", goprivate="corp.example", gonoproxy="corp.example", gonosumdb="corp.example,x.example")
    plan = make_plan([Requirement("corp.example/m", "v1.0.0"), Requirement("x.example/m", "v1.0.0"), Requirement("golang.org/x/text", "v0.3.2")],
                     env, candidates=["https://c.example/"])
    private, unverified, public = plan.routes
    assert private.private and private.proxies == [] and private.sumdb is None
    assert unverified.proxies == ["https://a.example", "https://b.example"] and unverified.sumdb is None
    assert [e.fall_back_on_error for e in public.entries] == [False, True, False] and public.sumdb.name == "sum.golang.org"
    assert plan.proxies == ["https://a.example", "https://b.example", "https://c.example"]
    with pytest.raises(ValueError):
        make_plan([], GoEnv(goproxy="ftp://x"), candidates=[])


def test_where_direct_starts():
    assert direct_target("github.com/golang/mod/sumdb").repo == "https://github.com/golang/mod"
    assert direct_target("git.corp.example/team/tool.git/sub").repo == "https://git.corp.example/team/tool.git"
    assert direct_target("golang.org/x/text").discovery == "https://golang.org/x/text?go-get=1"


def test_go_import_meta_tags():
    page = ('<html><head><meta name="go-import" content="example.com/mod git https://git.lab/repo.git">'
            '<meta name="go-import" content="example.com/other hg https://hg.lab/o"></head></html>')
    assert parse_go_import(page, "example.com/mod/sub") == ("example.com/mod", "git", "https://git.lab/repo.git")
    assert parse_go_import(page, "example.com/modx") is None
    assert parse_go_import("<html></html>", "example.com/mod") is None


def test_git_rewrites_longest_prefix_once():
    rules = [Rewrite("git@github.com:", "https://github.com/"), Rewrite("https://mirror.example/", "https://github.com/golang/")]
    t = git_transport("https://github.com/golang/mod", rules)
    assert (t.url, t.https, t.ssh) == ("https://mirror.example/mod", "https://mirror.example/mod", None)
    t = git_transport("https://github.com/org/repo", rules)
    assert (t.url, t.https, t.ssh, t.rewrite) == ("git@github.com:org/repo", None, "github.com:22", rules[0])
    assert ssh_target("ssh://git@git.example:2222/x.git") == "git.example:2222"
    assert https_equivalent("git@github.com:org/repo") == "https://github.com/org/repo"


def test_insteadof_rules_are_read_from_git_config(tmp_path):
    require(GIT is not None, "git is not installed")
    config = tmp_path / "gitconfig"
    config.write_text('[url "git@git.lab:"]\n\tinsteadOf = https://git.lab/\n')
    rules = read_git_rewrites({"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"})
    assert rules == [Rewrite("git@git.lab:", "https://git.lab/", str(config))]


def test_gomod_requirements_replacements_and_pins(tmp_path):
    gomod = tmp_path / "go.mod"
    gomod.write_text(
        "module example.com/app\n\ngo 1.22\n\n"
        "require golang.org/x/text v0.14.0\n"
        "require (\n\tgithub.com/org/lib v1.2.3 // indirect\n\tcorp.example/private v0.1.0\n\tgithub.com/org/local v1.0.0\n)\n"
        "replace github.com/org/local => ../local\n"
        "replace golang.org/x/text v0.14.0 => github.com/fork/text v0.14.1\n"
    )
    modules = read_gomod(gomod)
    assert [(m.path, m.version, m.indirect) for m in modules] == [
        ("github.com/fork/text", "v0.14.1", False), ("github.com/org/lib", "v1.2.3", True), ("corp.example/private", "v0.1.0", False)]
    chosen = representative(modules, GoEnv(goprivate="corp.example", gonoproxy="corp.example", gonosumdb="corp.example"), limit=2)
    assert [m.path for m in chosen] == ["corp.example/private", "github.com/fork/text"]
    (tmp_path / "go.sum").write_text("github.com/fork/text v0.14.1 h1:AAA=\ngithub.com/fork/text v0.14.1/go.mod h1:BBB=\n")
    assert read_gosum(tmp_path / "go.sum") == {("github.com/fork/text", "v0.14.1"): ("h1:AAA=", "h1:BBB=")}


def test_gomod_errors_name_file_and_line(tmp_path):
    gomod = tmp_path / "go.mod"
    gomod.write_text("module a\nrequire example.com/x v1\n")
    with pytest.raises(GoModError, match=r"go.mod:2: require: .*not canonical"):
        read_gomod(gomod)
    assert parse_module_arg("example.com/m").version == "latest"
    with pytest.raises(ValueError):
        parse_module_arg("example.com/m@v2.0.0")  # a v2 needs /v2 in the path


def _doctor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Were a usage check to let a run through, it would only reach 127.0.0.1:9 (discard, closed)."""
    env = {**os.environ, "GOPROXY": "https://127.0.0.1:9", "GOSUMDB": "off", "HTTPS_PROXY": "", "https_proxy": ""}
    safe = ["--try-proxy", "none"] + ([] if "--timeout" in args else ["--timeout", "1"])
    if "--reference" not in args:
        safe += ["--reference", "tls://127.0.0.1:9", "--reference", "https://127.0.0.1:9/dns-query"]
    return subprocess.run([sys.executable, "-m", "monitor", "doctor", *args, *safe], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,message", [
    ((), "give MODULE[@VERSION]"),
    (("example.com/m", "-m", "go.mod"), "not both"),
    (("bad path",), "malformed module path"),
    (("example.com/m", "--reference", "tls://127.0.0.1:9", "--reference", "tls://127.0.0.2:9"), "--reference: references need at least one tls:// (DoT) and one https://"),
    (("example.com/m", "--vantage", "elsewhere"), "want local, netns:NAME"),
    (("example.com/m", "--goproxy", "ftp://x"), "GOPROXY entry"),
    (("example.com/m", "--control-sni", "not a name"), "--control-sni: 'not a name' is not a host name"),
    (("example.com/m", "--timeout", "0"), "--timeout must be"),
])
def test_usage_errors_exit_2_before_any_packet(tmp_path, args, message):
    done = _doctor(*args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stdout == ""
