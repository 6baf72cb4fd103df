#!/usr/bin/env bash
# mutmut's mutants, one at a time, in a copy of the tree: for when `mutmut run`'s forked workers hang (their
# tests start processes after torch has started threads). `mutmut run` must have generated mutants/ first (it
# does before testing any). `mutmut apply` writes a mutant into the copy's source, pytest runs TESTS against it.
#
#   bash scripts/mutants.sh REGEX SHARD SHARDS TESTS...   e.g. bash scripts/mutants.sh 'x_before_training' 0 1 tests/test_guard.py
#
# Prints `killed|survived|timeout NAME` for every mutant whose name matches REGEX (every SHARDS-th from SHARD).
set -u
regex=$1 shard=$2 shards=$3
shift 3
root=$(pwd)
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
for name in $names; do
    rm -rf src && cp -r pristine src
    "$root/.venv/bin/mutmut" apply "$name" > /dev/null 2>&1 || { echo "unapplied $name"; continue; }
    PYTHONPATH=src OMP_NUM_THREADS=1 timeout 300 "$root/.venv/bin/python" -m pytest -x -q -p no:cacheprovider \
        -m "not slow and not learns" "$@" > /dev/null 2>&1
    case $? in
        0) echo "survived $name" ;;
        124) echo "timeout $name" ;;
        *) echo "killed $name" ;;
    esac
done
