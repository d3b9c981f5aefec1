#!/usr/bin/env bash
# Regenerate testdata/archives/ctr/*: archives written by containerd's own exporter
# (github.com/containerd/containerd/v2/core/images/archive.Export, v2.4.2) from generated
# multi-platform content, plus expected.json (computed by the generator from that content).
#
#   bash scripts/make-ctr-fixtures.sh                 # into testdata/archives/ctr/
#   OUT=/some/dir bash scripts/make-ctr-fixtures.sh
#   bash scripts/make-ctr-fixtures.sh verify          # read them with the real tools
#
# Generating needs only Go and the module proxy; no root, no daemon. The generator runs twice
# into two scratch directories and the script fails unless both runs give byte-identical files.
#
# `verify` (as root) reads every fixture with skopeo, podman, Debian's containerd 1.6 (`ctr
# import`) and dockerd 20.10 and writes the outcomes, errors included, to verify.log beside the
# fixtures. Each daemon gets its own state under a mktemp directory, listens on a unix socket
# there, and is stopped by its PID.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$REPO/testdata/archives/ctr}
MODE=${1:-generate}

WORK=$(mktemp -d /tmp/darcctr.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [[ $MODE == verify ]]; then
	# shellcheck source=scripts/ctrexport/verify.sh
	source "$HERE/ctrexport/verify.sh"
	exit 0
fi

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
