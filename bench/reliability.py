"""`make reliability`: every reliability test (faults, atomic writes, bad input, model files, the service, fuzzing with
more generated requests than CI's), then the bounded load test; each file's counts and seconds go into
docs/reliability.md between this script's markers (the load figures into docs/benchmarks.md's serve-load section).

    .venv/bin/python bench/reliability.py [--fuzz-examples 334] [--requests 600] [--no-load]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FILES = [  # the tests docs/reliability.md cites
    "test_resume.py", "test_checkpoint_minutes.py", "test_atomic.py", "test_full_disk.py", "test_bad_input.py",
    "test_bad_input_corpus.py", "test_bad_input_tianchi.py", "test_serve.py", "test_serve_slow_clients.py",
    "test_serve_fuzz.py", "test_random_kills.py",
]  # fmt: skip


def run_tests(fuzz_examples: int) -> list[tuple[str, int, int, int, float]]:
    """(file, passed, failed, skipped, seconds) per test file, from pytest's JUnit report."""
    report = Path(tempfile.mkdtemp()) / "junit.xml"
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "MEDDX_FUZZ_EXAMPLES": str(fuzz_examples),
        "MEDDX_KILL_TRIES": "10",
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
           *[f"tests/{f}" for f in FILES]]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, env=env, check=False)
    rows: dict[str, list[float]] = {f: [0, 0, 0, 0.0] for f in FILES}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = Path(case.get("classname", "").replace(".", "/")).name + ".py"
        row = rows.setdefault(name, [0, 0, 0, 0.0])
        kind = 1 if case.find("failure") is not None or case.find("error") is not None else 0
        kind = 2 if case.find("skipped") is not None else kind
        row[kind] += 1
        row[3] += float(case.get("time", 0))
    return [(f, int(r[0]), int(r[1]), int(r[2]), r[3]) for f, r in rows.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz-examples", type=int, default=334, help="Generated requests per operation (3 operations).")
    ap.add_argument("--requests", type=int, default=600, help="Requests per load level (bench/serve_load.py).")
    ap.add_argument("--no-load", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    rows = run_tests(args.fuzz_examples)
    if not args.no_load:
        subprocess.run([sys.executable, "bench/serve_load.py", "--requests", str(args.requests)], cwd=REPO, check=False)
    lines = [
        f"`make reliability` on {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores: "
        f"{sum(r[1] for r in rows)} passed, {sum(r[2] for r in rows)} failed, {sum(r[3] for r in rows)} skipped in "
        f"{(time.perf_counter() - started) / 60:.1f} min; schemathesis generated up to {args.fuzz_examples} requests "
        f"per operation (3 operations); the load test's figures are in docs/benchmarks.md (`serve-load`)"
        + (" (not run: --no-load)." if args.no_load else f", {args.requests} requests per level."),
        "",
        "| tests | passed | failed | skipped | seconds |",
        "|---|---|---|---|---|",
        *[f"| `tests/{f}` | {p} | {x} | {s} | {sec:.0f} |" for f, p, x, s, sec in rows],
    ]
    write_section("reliability", "The last `make reliability`", "\n".join(lines), REPO / "docs" / "reliability.md")
    print("\n".join(lines))
    sys.exit(1 if any(r[2] for r in rows) else 0)


if __name__ == "__main__":
    main()
