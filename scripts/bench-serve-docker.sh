#!/usr/bin/env bash
# docker 20.10 pulls the 12 workload images (scripts/bench.sh's workload, its plain
# docker-archive) two ways, in one run, each into a fresh dockerd:
#   serve     darc serve docker.tar, then docker pull each image from it
#   registry  darc load docker.tar into Debian's docker-registry, then docker pull each
# and prints the wall time of each step. Everything listens on 127.0.0.1 and is stopped by
# its PID. Needs root (dockerd), about 15 GB of free disk (dockerd's vfs driver copies every
# layer's tree) and the workload (made by scripts/bench.sh, or here if missing).
#
#   bash scripts/bench-serve-docker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

tags=containers_image_openpgp
work=$(mktemp -d /tmp/darc-sd.XXXXXX)
serve_pid=
cleanup() {
	if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
	stop_dockerd || true
	stop_registry || true
	unmount_under "$work" || true
	rm -rf "$work"
}
trap cleanup EXIT

go run -tags "$tags" ./internal/benchwork/cmd/benchwork prepare >&2
bench_dir=${DARC_BENCH_DIR:-${TMPDIR:-/tmp}/darc-bench-v1}
archive=$bench_dir/docker.tar
go build -tags "$tags" -o "$work/darc" ./cmd/darc
mapfile -t images < <("$work/darc" ls --json "$archive" | jq -r '.[].tags[0]' | sed 's|^[^/]*/||')

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

pull_all() { # REGISTRY
	local img
	for img in "${images[@]}"; do
		"$DARC_DOCKER" -H "$DOCKER_HOST" pull -q "$1/$img" >/dev/null
	done
}

# 1. darc serve, then docker pull.
t0=$(now)
"$work/darc" serve --addr 127.0.0.1:0 "$archive" 2>"$work/serve.log" &
serve_pid=$!
addr=
for _ in $(seq 300); do
	addr=$(sed -n 's|^darc: serving .* on http://\(.*\)/v2/$|\1|p' "$work/serve.log")
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log" >&2; exit 1; }
serve_start=$(since "$t0")
start_dockerd "$work/d1" >&2
t0=$(now)
pull_all "$addr"
serve_pull=$(since "$t0")
stop_dockerd
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
serve_pid=
rm -rf "$work/d1"

# 2. darc load into docker-registry, then docker pull.
start_registry "$work/reg" >&2
t0=$(now)
"$work/darc" load -q --tls-verify=false "$archive" "docker://$REGISTRY_ADDR" >/dev/null
reg_load=$(since "$t0")
start_dockerd "$work/d2" >&2
t0=$(now)
pull_all "$REGISTRY_ADDR"
reg_pull=$(since "$t0")

printf '%-48s %8s\n' "step (12 images, $(du -h "$archive" | cut -f1) archive)" "seconds"
printf '%-48s %8.1f\n' "darc serve: start until listening" "$serve_start"
printf '%-48s %8.1f\n' "docker pull x12 from darc serve" "$serve_pull"
printf '%-48s %8.1f\n' "darc load into docker-registry" "$reg_load"
printf '%-48s %8.1f\n' "docker pull x12 from docker-registry" "$reg_pull"
printf '%-48s %8.1f\n' "total, serve" "$(echo "$serve_start + $serve_pull" | bc)"
printf '%-48s %8.1f\n' "total, load then pull" "$(echo "$reg_load + $reg_pull" | bc)"
