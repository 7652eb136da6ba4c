#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for FUZZTIME each (default
# 20s), one after another. Targets are found by grep rather than listed, so
# a new FuzzX runs without a change here. The first failure stops the run;
# go test has then written the failing input to the package's
# testdata/fuzz/FuzzX/, where plain `go test` replays it from then on.
# FUZZMINIMIZETIME (default 5s) bounds the minimizing of each new input:
# at go's default of 60s, one input from a large seed can take a whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}
minimizetime=${FUZZMINIMIZETIME:-5s}
files=$(grep -rlE --include='*_test.go' --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
if [ -z "$files" ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
for file in $files; do
  dir=$(dirname "$file")
  for name in $(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$file"); do
    echo "== $dir $name ($fuzztime)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$dir"
  done
done
