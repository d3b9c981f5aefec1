#!/usr/bin/env bash
# Regenerate testdata/archives/ctr/*: archives written by containerd's own exporter
# (github.com/containerd/containerd/v2/core/images/archive.Export, v2.4.2) from generated
# multi-platform content, plus expected.json (computed by the generator from that content).
#
#   bash scripts/make-ctr-fixtures.sh                 # into testdata/archives/ctr/
#   OUT=/some/dir bash scripts/make-ctr-fixtures.sh
#
# Needs only Go and the module proxy; no root, no daemon. The generator runs twice into two
# scratch directories and the script fails unless both runs give byte-identical files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$REPO/testdata/archives/ctr}

WORK=$(mktemp -d /tmp/darcctr.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Build once, run twice: the second run checks reproducibility.
(cd "$HERE/ctrexport" && go build -o "$WORK/ctrexport" .)
"$WORK/ctrexport" "$WORK/run1"
"$WORK/ctrexport" "$WORK/run2" 2>/dev/null
if ! diff -r "$WORK/run1" "$WORK/run2" >/dev/null; then
	echo "make-ctr-fixtures.sh: two runs of the generator differ:" >&2
	diff -rq "$WORK/run1" "$WORK/run2" >&2 || true
	exit 1
fi
echo "two runs byte-identical" >&2

mkdir -p "$OUT"
for f in "$WORK/run1"/*; do
	cp "$f" "$OUT/$(basename "$f").tmp"
	mv -f "$OUT/$(basename "$f").tmp" "$OUT/$(basename "$f")"
done
(cd "$OUT" && ls -l -- *.tar expected.json) >&2
