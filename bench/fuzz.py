"""The long fuzzing run: every target of tests/fuzz_targets.py under two engines side by side,
each bounded in inputs and in time, then inputs/s per target and every crash with a line that
replays it. See bench/README.md; the short run is tests/test_fuzz.py.

    python bench/fuzz.py [--engines atheris,mutate] [--targets config,dns_reply,...]
                         [--inputs 150000] [--seconds 300] [--seed 1] [--out DIR]
    python bench/fuzz.py --replay TARGET FILE      # one saved input, with its traceback

Engines:
- mutate: in this process, seeds (real inputs) under 1–16 random mutations (bit flips, byte
  sets, insertions and deletions, interesting integers, format tokens, splices), now and
  then random bytes; no feedback. A crash is recorded and the run goes on.
- atheris (if installed): libFuzzer's coverage-guided mutation over the same seeds and
  tokens (as a dictionary), monitor, dnspython and PyYAML instrumented; one child process
  per target, which stops at its first crash or hang (libFuzzer's -timeout, 10 s).
A crash is any exception the target's caller does not handle (tests/fuzz_targets.py);
a hang is an input that runs past 10 s. Reproducers are saved under --out.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere: tests.fuzz_targets

HANG_SECONDS = 10
_INSTRUMENTED = ["monitor", "dns", "yaml"]


@dataclass
class Finding:
    kind: str  # "crash" or "hang"
    summary: str  # exception type and message, or libFuzzer's line
    where: str  # innermost frame
    data: bytes
    saved: Path | None = None


@dataclass
class Run:
    engine: str
    target: str
    inputs: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    coverage: str = ""  # atheris: libFuzzer's cov/ft at the end
    note: str = ""


# --- mutate: in this process ----------------------------------------------------------------


class _Hang(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Hang()


def run_mutate(name: str, inputs: int, seconds: float, seed: int, out: Path) -> Run:
    from tests.fuzz_targets import TARGETS, random_input

    target = TARGETS[name]
    seeds = target.seeds()
    rng = random.Random(f"{seed}:{name}")
    run = Run("mutate", name)
    seen: set[tuple[str, str]] = set()
    signal.signal(signal.SIGALRM, _on_alarm)
    started = time.perf_counter()
    try:
        while run.inputs < inputs and time.perf_counter() - started < seconds:  # both bound the loop
            data = random_input(target, seeds, rng)
            run.inputs += 1
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                target.run(data)
            except _Hang:
                _record(run, seen, Finding("hang", f"ran past {HANG_SECONDS}s", "", data), out)
            except Exception as e:  # a crash: recorded, and the run goes on
                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
                _record(run, seen, Finding("crash", f"{type(e).__name__}: {e}"[:200], where, data), out)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    run.seconds = time.perf_counter() - started
    return run


def _record(run: Run, seen: set[tuple[str, str]], finding: Finding, out: Path) -> None:
    key = (finding.summary.split(":")[0], finding.where)  # one report per exception type and place
    if key in seen:
        return
    seen.add(key)
    finding.saved = out / f"{run.engine}-{run.target}-{finding.kind}-{len(run.findings)}"
    finding.saved.write_bytes(finding.data)
    run.findings.append(finding)


# --- atheris: a child process per target ------------------------------------------------------


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _child(name: str, libfuzzer_args: list[str]) -> None:
    """In the child: instrument, then hand over to libFuzzer (which exits the process)."""
    import atheris

    with atheris.instrument_imports(include=_INSTRUMENTED):
        from tests.fuzz_targets import TARGETS
    atheris.Setup([sys.argv[0], *libfuzzer_args], TARGETS[name].run)
    atheris.Fuzz()


def run_atheris(name: str, inputs: int, seconds: float, seed: int, out: Path) -> Run:
    from tests.fuzz_targets import TARGETS

    target = TARGETS[name]
    run = Run("atheris", name)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as work:
        corpus, artifacts = Path(work, "corpus"), Path(work, "artifacts")
        corpus.mkdir()
        artifacts.mkdir()
        for i, data in enumerate(target.seeds()):
            (corpus / f"seed-{i}").write_bytes(data)
        dictionary = Path(work, "tokens.dict")
        dictionary.write_text("".join(f'"{_escape(t)}"\n' for t in target.tokens))
        args = [
            str(corpus), f"-runs={inputs}", f"-max_total_time={int(seconds)}", f"-seed={seed}",
            f"-timeout={HANG_SECONDS}", "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1", *([f"-dict={dictionary}"] if target.tokens else []),
        ]
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--atheris-child", name, "--", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", timeout=seconds + 120,
        )
        run.seconds = time.perf_counter() - started
        log = child.stdout
        executed = re.findall(r"stat::number_of_executed_units: (\d+)", log)
        run.inputs = int(executed[-1]) if executed else int((re.findall(r"^#(\d+)", log, re.M) or ["0"])[-1])
        coverage = re.findall(r"cov: (\d+) ft: (\d+)", log)
        run.coverage = f"cov {coverage[-1][0]} ft {coverage[-1][1]}" if coverage else ""
        for artifact in sorted(artifacts.iterdir()):
            kind = "hang" if artifact.name.startswith("timeout-") else "crash"
            saved = out / f"atheris-{name}-{artifact.name}"
            saved.write_bytes(artifact.read_bytes())
            run.findings.append(Finding(kind, _uncaught(log) or artifact.name, _where(log), artifact.read_bytes(), saved))
        if child.returncode != 0 and not run.findings:
            run.note = f"child exited {child.returncode}: {log.strip().splitlines()[-1] if log.strip() else ''}"
    return run


def _escape(token: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)


def _uncaught(log: str) -> str:
    m = re.search(r"=== Uncaught Python exception: ===\n(.*)\n", log)
    return m.group(1)[:200] if m else ""


def _where(log: str) -> str:
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', log)
    return f"{Path(frames[-1][0]).name}:{frames[-1][1]} ({frames[-1][2]})" if frames else ""


# ---------------------------------------------------------------------------------------------


def main() -> int:
    if "--atheris-child" in sys.argv:
        at = sys.argv.index("--atheris-child")
        _child(sys.argv[at + 1], sys.argv[sys.argv.index("--") + 1 :])
        return 0
    from tests.fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description="Fuzz monitor's parsers (the long run); see bench/README.md")
    parser.add_argument("--engines", default="atheris,mutate", help="comma-separated: atheris, mutate (default both)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated (default all: {','.join(TARGETS)})")
    parser.add_argument("--inputs", type=int, default=150_000, help="inputs per target and engine (default 150000)")
    parser.add_argument("--seconds", type=float, default=300, help="time per target and engine, whichever ends first (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "monitor-fuzz", help="where reproducers are saved")
    parser.add_argument("--replay", nargs=2, metavar=("TARGET", "FILE"), help="run one saved input and show what it raises")
    args = parser.parse_args()
    if args.replay:
        name, path = args.replay
        TARGETS[name].run(Path(path).read_bytes())  # a crash shows its traceback here
        print(f"{path}: no crash in {name}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    engines = [e for e in args.engines.split(",") if e]
    if "atheris" in engines and not atheris_available():
        print("atheris is not installed (pip install atheris): running the mutate engine only", file=sys.stderr)
        engines = [e for e in engines if e != "atheris"]
    runners = {"atheris": run_atheris, "mutate": run_mutate}

    runs: list[Run] = []
    print(f"{'engine':8} {'target':18} {'inputs':>9} {'seconds':>8} {'inputs/s':>9} {'crashes':>7} {'hangs':>5}  coverage", flush=True)
    for name in args.targets.split(","):
        for engine in engines:
            run = runners[engine](name, args.inputs, args.seconds, args.seed, args.out)
            runs.append(run)
            crashes = sum(f.kind == "crash" for f in run.findings)
            hangs = sum(f.kind == "hang" for f in run.findings)
            rate = run.inputs / run.seconds if run.seconds else 0
            print(f"{engine:8} {name:18} {run.inputs:9d} {run.seconds:8.1f} {rate:9.0f} {crashes:7d} {hangs:5d}  {run.coverage}{run.note}", flush=True)
    total = sum(r.inputs for r in runs)
    seconds = sum(r.seconds for r in runs)
    print(f"{'total':27} {total:9d} {seconds:8.1f} {total / seconds if seconds else 0:9.0f} "
          f"{sum(f.kind == 'crash' for r in runs for f in r.findings):7d} {sum(f.kind == 'hang' for r in runs for f in r.findings):5d}")
    for r in runs:
        for f in r.findings:
            print(f"\n{f.kind} in {r.target} ({r.engine}): {f.summary}" + (f" at {f.where}" if f.where else ""))
            print(f"  input ({len(f.data)} bytes): {f.data[:120]!r}{'…' if len(f.data) > 120 else ''}")
            print(f"  saved: {f.saved}")
            print(f"  replay: python bench/fuzz.py --replay {r.target} {f.saved}")
    return 1 if any(r.findings for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
