#!/usr/bin/env bash
# mutmut's mutants, one at a time, in a copy of the tree: for when `mutmut run`'s forked workers hang (their
# tests start processes after torch has started threads). `mutmut run` must have generated mutants/ from the
# current source first (it does before testing any; `mutmut apply` splices in the function bodies it generated,
# so mutants/ older than an edit of src/ test stale code). `mutmut apply` writes a mutant into the copy's source,
# pytest runs TESTS against it.
#
#   bash scripts/mutants.sh REGEX SHARD SHARDS TESTS...   e.g. bash scripts/mutants.sh 'x_before_training' 0 1 tests/test_guard.py
#
# Prints `killed|survived|timeout NAME` for every mutant whose name matches REGEX (every SHARDS-th from SHARD);
# stops with an error when the tests fail without a mutant, cannot run, or no mutant matches.
set -euo pipefail
regex=$1 shard=$2 shards=$3
shift 3
root=$(pwd)
[ -d mutants ] || { echo "no mutants/ here: run \`mutmut run\` first (it generates them)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r src tests pyproject.toml mutants "$work"/
cp -r src "$work/pristine"
cd "$work"
names=$(python3 - "$regex" "$shard" "$shards" <<'PY'
import glob, json, re, sys
regex, shard, shards = re.compile(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
names = sorted(k for f in glob.glob("mutants/**/*.meta", recursive=True)
               for k in json.load(open(f))["exit_code_by_key"] if regex.search(k))
print("\n".join(names[shard::shards]))
PY
)
[ -n "$names" ] || { echo "no mutant matches $regex (shard $shard of $shards)" >&2; exit 2; }
tests() {
    PYTHONPATH="$work/src" OMP_NUM_THREADS=1 timeout -k 10 300 "$root/.venv/bin/python" -m pytest -x -q \
        -p no:cacheprovider -m "not slow and not learns" "$@" > /dev/null 2>&1
}
status=0
tests "$@" || status=$?
[ "$status" -eq 0 ] || { echo "the tests fail (exit $status) without any mutant: fix them first" >&2; exit 2; }
for name in $names; do
    rm -rf src && cp -r pristine src
    "$root/.venv/bin/mutmut" apply "$name" > /dev/null 2>&1 || { echo "unapplied $name"; continue; }
    status=0
    tests "$@" || status=$?
    case $status in
        0) echo "survived $name" ;;
        1|2) echo "killed $name" ;;  # a test failed, or the mutant broke collection (an import)
        124|137) echo "timeout $name" ;;
        *) echo "pytest exited $status on $name: not a test result" >&2; exit 2 ;;
    esac
done
