#!/usr/bin/env bash
# Runs the workload benchmarks of issues 3 (write), 4 (load, merge), 13 (seekable .tar.zst
# bundles: list, load one image, save compressed, load in place) and 14 (darc serve: 8 pulls
# at once) and prints darc beside
# containers/image (and `cat` for merging, the zstd command for listing a bundle, and darc's
# own plain-tar or single-pass paths for the bundle's save and loads).
#
#   scripts/bench.sh                 every benchmark, 2 runs each
#   COUNT=3 scripts/bench.sh         3 runs each
#   BENCH='Write12' scripts/bench.sh only the benchmarks matching a -bench pattern
#                                    (default 'Write12|Load12|Merge|Bundle|Serve')
#   PROFILE=1 scripts/bench.sh       also write CPU, allocation and peak-heap profiles of each
#                                    variant to bench-out/prof/ (go tool pprof -top FILE)
#
# The workload (an OCI layout of 12 images sharing 3 base layers, about 1.26 GB of layers
# uncompressed and 550 MB gzip, and the archives made from it: about 3.8 GB on disk in all) is
# generated once into $DARC_BENCH_DIR, default $TMPDIR/darc-bench-v1, which takes a minute
# or two. Every variant runs in a child process of its own, one after the other; each run
# needs about 1.3 GB more of free disk while it runs. The raw `go test` output goes to
# bench-out/bench-<time>.txt, the table to standard output.
#
# The machine should be otherwise idle: the figures are wall times of CPU- and disk-bound work.
set -euo pipefail
cd "$(dirname "$0")/.."

count=${COUNT:-2}
bench=${BENCH:-'Write12|Load12|Merge|Bundle|Serve'}
tags=containers_image_openpgp
mkdir -p bench-out
out="bench-out/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"

echo "== workload" >&2
go run -tags "$tags" ./internal/benchwork/cmd/benchwork prepare

if [ -n "${PROFILE:-}" ]; then
	mkdir -p bench-out/prof
	DARC_BENCH_PROFILE=$(pwd)/bench-out/prof
	export DARC_BENCH_PROFILE
fi

{
	echo "# $(date -u +%FT%TZ) $(go version) tags: $tags count: $count"
	echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
} >"$out"
# One package at a time: go test would otherwise run the two test binaries at once.
for pkg in ./archive/ ./copy/; do
	echo "== go test -bench '$bench' $pkg" >&2
	go test -tags "$tags" -run '^$' -bench "$bench" -benchtime 1x -count "$count" -timeout 2h "$pkg" | tee -a "$out" >&2
done

echo "== results ($out)" >&2
go run -tags "$tags" ./internal/benchwork/cmd/benchwork table "$out"
