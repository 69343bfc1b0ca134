#!/usr/bin/env bash
# Mutation testing of chosen library modules with mutmut 3, against the fast tests that cover them.
#
# Usage:
#   scripts/mutation.sh [--tests "tests/test_a.py tests/test_b.py"] [--show] MODULE...
#
#   MODULE     a module of the riffusion package: audio, image, params, _files, _checks, limits,
#              spectrogram, ..., a module of a subpackage as models/sd1/interpolation, or a path
#              such as riffusion/audio.py. Several may be given.
#   --tests    the test files to run against the mutants (default: per module, see tests_for);
#              also settable as MUTATION_TESTS.
#   --show     print the diff of every surviving mutant.
#
# Environment:
#   MUTATION_JOBS     parallel mutant workers (default 2: the machine is shared).
#   MUTATION_FILTER   glob patterns of mutant names to run (e.g. '*__mutmut_*[05]' for a
#                     systematic one-in-five sample); the others are reported as not checked.
#   MUTATION_WORKDIR  scratch folder (default /tmp/riffusion-mutation-<modules>); it is wiped
#                     first. mutmut writes its `mutants/` tree there, never into the worktree.
#
# mutmut only ever runs, for each mutant, the selected tests that called the mutated function (it
# records that in a first, unmutated run), so the cost grows with how often a function is called
# by the selected tests. Module-level constants (riffusion/limits.py) are not mutated by mutmut 3:
# it mutates function bodies only.
#
# Prints, per module: total, killed, timeout, survived, no tests, other, and the kill rate
# (killed + timeout) / total. Exit status 0 when the run completed, whatever the rate.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tests="${MUTATION_TESTS:-}"
show=0
modules=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tests) tests="$2"; shift 2 ;;
        --show) show=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) modules+=("$1"); shift ;;
    esac
done
if [[ ${#modules[@]} -eq 0 ]]; then
    echo "usage: scripts/mutation.sh [--tests \"FILES\"] [--show] MODULE..." >&2
    exit 2
fi

# The fast test files that exercise each module (the ones that exist are used).
tests_for() {
    case "$1" in
        _files) echo tests/test_audio.py tests/test_image.py tests/test_files_pins.py ;;
        _checks) echo tests/test_audio.py tests/test_checks_pins.py ;;
        limits) echo tests/test_robustness.py ;;
        joins|tempo|schedule) echo tests/test_looping.py tests/test_looping_pins.py ;;
        models/sd1/interpolation) echo tests/test_diffusion_math.py tests/test_interpolation_pins.py ;;
        *) echo "tests/test_${1#_}.py" "tests/test_${1#_}_pins.py" ;;
    esac
}

names=()
files=()
for module in "${modules[@]}"; do
    # riffusion/models/sd1/interpolation.py, models/sd1/interpolation and
    # models.sd1.interpolation all name the module models/sd1/interpolation.
    name="${module%.py}"
    name="${name#riffusion/}"
    name="${name//.//}"
    if [[ ! -f "$here/riffusion/$name.py" ]]; then
        echo "no module riffusion/$name.py" >&2
        exit 2
    fi
    names+=("${name//\//.}")
    files+=("riffusion/$name.py")
    auto_tests="${auto_tests:-} $(tests_for "$name")"
done
tests="${tests:-$auto_tests}"
selected=()
for file in $tests; do
    [[ -f "$here/$file" ]] && [[ " ${selected[*]-} " != *" $file "* ]] && selected+=("$file")
done
if [[ ${#selected[@]} -eq 0 ]]; then
    echo "none of the test files exist: $tests" >&2
    exit 2
fi

workdir="${MUTATION_WORKDIR:-/tmp/riffusion-mutation-$(IFS=-; echo "${names[*]}")}"
rm -rf "$workdir"
mkdir -p "$workdir"
tar -C "$here" --exclude=__pycache__ -cf - riffusion tests pyproject.toml | tar -C "$workdir" -xf -

# The copy's [tool.mutmut] section: the repository's settings plus this run's modules and tests.
python - "$workdir/pyproject.toml" "${files[*]}" "${selected[*]}" <<'EOF'
import json
import re
import sys
import tomllib
from pathlib import Path

path, files, tests = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
text = path.read_text()
config = tomllib.loads(text).get("tool", {}).get("mutmut", {})
config["only_mutate"] = files
config["pytest_add_cli_args_test_selection"] = tests
text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in config.items()]
path.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n")
EOF

echo "mutating ${files[*]} against ${selected[*]} in $workdir"
cd "$workdir"
# The mutated copy must be what the tests import: no PYTHONPATH pointing at a checkout.
set +e
# shellcheck disable=SC2086  # MUTATION_FILTER holds several patterns
env -u PYTHONPATH OMP_NUM_THREADS=1 mutmut run --max-children "${MUTATION_JOBS:-2}" \
    ${MUTATION_FILTER:-} > mutmut-run.log 2>&1
status=$?
set -e
if [[ $status -ne 0 ]]; then
    tail -n 40 mutmut-run.log >&2
    echo "mutmut run failed (status $status); full log: $workdir/mutmut-run.log" >&2
    exit "$status"
fi

python - "$show" "${files[@]}" <<'EOF'
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

show, files = sys.argv[1] == "1", sys.argv[2:]
# -9: killed by the CPU-time limit after ignoring SIGXCPU (stuck in C code), i.e. a timeout.
status_of = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
             36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
             -9: "timeout"}
print(f"{'module':28} {'total':>6} {'killed':>7} {'timeout':>8} {'survived':>9} {'no tests':>9}"
      f" {'other':>6} {'kill rate':>10}")
survivors = []
for file in files:
    meta = Path("mutants") / (file + ".meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    unchecked = sum(code is None for code in codes.values())
    codes = {name: code for name, code in codes.items() if code is not None}
    counts = Counter(status_of.get(code, "other") for code in codes.values())
    total = len(codes)
    caught = counts["killed"] + counts["timeout"]
    rate = f"{100 * caught / total:.1f}%" if total else "n/a"
    print(f"{file:28} {total:6} {counts['killed']:7} {counts['timeout']:8} {counts['survived']:9}"
          f" {counts['no tests']:9} {counts['other']:6} {rate:>10}")
    if unchecked:
        print(f"  ({unchecked} more mutants not checked: outside MUTATION_FILTER)")
    survivors += [name for name, code in codes.items() if status_of.get(code) != "killed"
                  and status_of.get(code) != "timeout"]
if survivors:
    print("\nnot killed:")
    for name in sorted(survivors):
        print(" ", name)
        if show:
            diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True)
            print("\n".join("      " + line for line in diff.stdout.splitlines()[1:]))
EOF
