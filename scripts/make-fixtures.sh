#!/usr/bin/env bash
# Regenerate testdata/archives/*: docker-archive tarballs written by the real tools
# (podman, buildah, skopeo, dockerd 20.10, crane) from tiny images built from scratch.
#
#   bash scripts/make-fixtures.sh            # all fixtures into testdata/archives/
#   OUT=/some/dir bash scripts/make-fixtures.sh
#
# Needs root (buildah/podman vfs storage, dockerd). Installs missing Debian packages and crane.
# Every server it starts listens on 127.0.0.1 and is stopped by its PID on exit.
# Running it again overwrites the fixtures; containers-storage images are built with
# --timestamp 0, so the podman/buildah/skopeo outputs are byte-identical from run to run
# (dockerd and crane outputs are not: see testdata/archives/README.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$REPO/testdata/archives}
# A fixed registry port keeps the crane fixtures' tags (127.0.0.1:PORT/...) stable between
# runs; if it is taken, start_registry picks another free port.
export REGISTRY_PORT=${REGISTRY_PORT:-5123}

# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

log() { printf '\n==> %s\n' "$*" >&2; }

if [[ $(id -u) != 0 ]]; then
	echo "make-fixtures.sh: must run as root" >&2
	exit 1
fi

ensure_packages skopeo podman buildah docker-registry docker.io containerd runc zstd xz-utils bzip2 gzip curl python3
ensure_crane

mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")

# Short path: dockerd's unix sockets live under it.
WORK=$(mktemp -d /tmp/darcfx.XXXXXX)
cleanup() {
	local rc=$?
	set +e
	stop_registry
	stop_dockerd
	unmount_under "$WORK"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STORE_ROOT=$WORK/storage/root
STORE_RUN=$WORK/storage/run
mkdir -p "$STORE_ROOT" "$STORE_RUN" "$WORK/tmp"
export TMPDIR=$WORK/tmp
BUILDAH=(buildah --storage-driver vfs --root "$STORE_ROOT" --runroot "$STORE_RUN")
PODMAN=(podman --storage-driver vfs --root "$STORE_ROOT" --runroot "$STORE_RUN" --tmpdir "$WORK/tmp"
	--events-backend none --cgroup-manager cgroupfs)
CS="containers-storage:[vfs@$STORE_ROOT+$STORE_RUN]"
SKOPEO=(skopeo --insecure-policy)

A1=example.com/darc/a:1
ALATEST=example.com/darc/a:latest
B=docker.io/library/busybox-like:1
C=localhost/c:v1

# ---------------------------------------------------------------- layers and images
log "building the layer contents"
SRC=$WORK/src
mkdir -p "$SRC/base1/etc" "$SRC/base2/usr/share/darc" "$SRC/appB/app/b" "$SRC/appC/app/c" "$SRC/appC/etc"
printf 'darc base layer 1\n' >"$SRC/base1/etc/darc-base1"
printf 'Welcome to a darc test image.\n' >"$SRC/base1/etc/motd"
printf 'darc base layer 2\n' >"$SRC/base2/usr/share/darc/base2.txt"
printf 'These files exist only to make a small second layer.\n' >"$SRC/base2/usr/share/darc/README"
printf '#!/bin/sh\necho "hello from image B"\n' >"$SRC/appB/app/b/run.sh"
chmod 0755 "$SRC/appB/app/b/run.sh"
seq 1 200 >"$SRC/appB/app/b/numbers.txt"
printf '[c]\nname = image C\n' >"$SRC/appC/app/c/config.ini"
printf 'image C\n' >"$SRC/appC/etc/darc-c"

# Each `buildah commit` adds one layer (the working container's diff) on top of the layers of
# the image it was started from. --timestamp 0 makes configs and layer tars reproducible.
build() { # build NAME|"" FROM SRCDIR|"" [buildah config args...] ; prints the image ID
	local name=$1 from=$2 src=$3 ctr
	shift 3
	ctr=$("${BUILDAH[@]}" from --pull-never "$from")
	if [[ -n $src ]]; then
		"${BUILDAH[@]}" copy --quiet "$ctr" "$src/" / >/dev/null
	fi
	if (($#)); then
		"${BUILDAH[@]}" config "$@" "$ctr"
	fi
	if [[ -n $name ]]; then
		"${BUILDAH[@]}" commit --quiet --timestamp 0 --rm "$ctr" "$name"
	else
		"${BUILDAH[@]}" commit --quiet --timestamp 0 --rm "$ctr"
	fi
}

log "building images with buildah"
BASE1_ID=$(build localhost/darc-tmp/base1:latest scratch "$SRC/base1")
A_ID=$(build "$A1" localhost/darc-tmp/base1:latest "$SRC/base2" --env DARC_IMAGE=a --cmd '["/bin/sh"]')
"${BUILDAH[@]}" tag "$A1" "$ALATEST"
B_ID=$(build "$B" "$A1" "$SRC/appB" --env DARC_IMAGE=b --entrypoint '["/app/b/run.sh"]')
C_ID=$(build "$C" localhost/darc-tmp/base1:latest "$SRC/appC" --env DARC_IMAGE=c --workingdir /app/c)
# Untagged: committed without a name; a commit with no file changes adds an empty layer
# (the 1024-byte tar, diffID sha256:5f70bf18...) on top of A's two layers.
U_ID=$(build "" "$A1" "" --label darc.untagged=yes --env DARC_IMAGE=untagged)
"${BUILDAH[@]}" images --all --no-trunc
printf 'A=%s\nB=%s\nC=%s\nU=%s\nbase1=%s\n' "$A_ID" "$B_ID" "$C_ID" "$U_ID" "$BASE1_ID" >&2

# Write into a temp name, then rename into place, so a failed step leaves no partial fixture.
publish() { chmod 0644 "$1"; mv -f "$1" "$OUT/$2"; printf '   wrote %s (%s bytes)\n' "$2" "$(stat -c %s "$OUT/$2")" >&2; }
NEW=$WORK/new
mkdir -p "$NEW"

# ---------------------------------------------------------------- podman save -m
log "podman save -m"
"${PODMAN[@]}" save -m --format docker-archive -o "$NEW/podman-save-m.tar" "$A1" "$ALATEST" "$B" "$C"
publish "$NEW/podman-save-m.tar" podman-save-m.tar
"${PODMAN[@]}" save -m --format docker-archive -o "$NEW/podman-save-m-untagged.tar" "$U_ID" "$C"
publish "$NEW/podman-save-m-untagged.tar" podman-save-m-untagged.tar

# ---------------------------------------------------------------- skopeo / buildah push
log "skopeo copy oci: -> docker-archive:"
"${SKOPEO[@]}" copy -q "$CS$A1" "oci:$WORK/oci:a1"
"${SKOPEO[@]}" copy -q "oci:$WORK/oci:a1" "docker-archive:$NEW/skopeo-copy.tar:$A1"
publish "$NEW/skopeo-copy.tar" skopeo-copy.tar

log "buildah push -> docker-archive:"
"${BUILDAH[@]}" push --quiet "$B" "docker-archive:$NEW/buildah-push.tar:$B"
publish "$NEW/buildah-push.tar" buildah-push.tar

# ---------------------------------------------------------------- dockerd 20.10
log "docker save (dockerd 20.10)"
start_dockerd "$WORK/dk"
dk load -q -i "$OUT/podman-save-m.tar"
dk images --no-trunc
# docker shows and saves docker.io/library/busybox-like:1 as busybox-like:1
dk save -o "$NEW/docker20-save-multi.tar" "$A1" "$ALATEST" busybox-like:1 "$C"
publish "$NEW/docker20-save-multi.tar" docker20-save-multi.tar
dk save -o "$NEW/docker20-save-by-id.tar" "${B_ID#sha256:}"
publish "$NEW/docker20-save-by-id.tar" docker20-save-by-id.tar
stop_dockerd

# ---------------------------------------------------------------- registry + crane
log "registry + crane"
push() { "${SKOPEO[@]}" copy -q --dest-tls-verify=false "$@"; }
start_registry "$WORK/reg"
R=$REGISTRY_ADDR
push "$CS$A1" "docker://$R/darc/a:1"
push "$CS$A1" "docker://$R/darc/a:latest"
push "$CS$B" "docker://$R/darc/b:1"
push "$CS$C" "docker://$R/darc/c:v1"
# a:1 and a:latest are the same image but two references: crane writes two manifest entries
# and the same config member twice.
"$CRANE" pull --insecure "$R/darc/a:1" "$R/darc/a:latest" "$R/darc/b:1" "$R/darc/c:v1" "$NEW/crane-pull-multi.tar"
publish "$NEW/crane-pull-multi.tar" crane-pull-multi.tar
"$CRANE" pull --insecure --format legacy "$R/darc/a:1" "$R/darc/b:1" "$R/darc/c:v1" "$NEW/crane-legacy.tar"
publish "$NEW/crane-legacy.tar" crane-legacy.tar
# pulled by digest: crane invents the tag "i-was-a-digest"
CDIGEST=$("$CRANE" digest --insecure "$R/darc/c:v1")
"$CRANE" pull --insecure "$R/darc/c@$CDIGEST" "$NEW/crane-pull-digest.tar"
publish "$NEW/crane-pull-digest.tar" crane-pull-digest.tar
stop_registry

# zstd layers, from a second, empty registry on another port: containers/image remembers
# (in its blob info cache) that these layers exist gzip-compressed on the first registry and
# would reuse those blobs instead of compressing with zstd. zstd layers need an OCI manifest.
REGISTRY_PORT=$((REGISTRY_PORT + 1)) start_registry "$WORK/reg-zstd"
R=$REGISTRY_ADDR
push --format oci --dest-compress-format zstd "$CS$A1" "docker://$R/darc/a:zstd"
push --format oci --dest-compress-format zstd "$CS$C" "docker://$R/darc/c:zstd"
"$CRANE" pull --insecure "$R/darc/a:zstd" "$R/darc/c:zstd" "$NEW/crane-pull-zstd.tar"
if ! tar tf "$NEW/crane-pull-zstd.tar" | grep -q '\.tar\.zst$'; then
	echo "crane-pull-zstd.tar has no .tar.zst layer members" >&2
	exit 1
fi
publish "$NEW/crane-pull-zstd.tar" crane-pull-zstd.tar
stop_registry

# ---------------------------------------------------------------- whole-archive compression
log "whole-archive compressed copies"
gzip -n -9 -c "$OUT/podman-save-m.tar" >"$NEW/podman-save-m.tar.gz"
publish "$NEW/podman-save-m.tar.gz" podman-save-m.tar.gz
zstd -q -19 -c "$OUT/podman-save-m.tar" >"$NEW/podman-save-m.tar.zst"
publish "$NEW/podman-save-m.tar.zst" podman-save-m.tar.zst
xz -9 -c "$OUT/docker20-save-multi.tar" >"$NEW/docker20-save-multi.tar.xz"
publish "$NEW/docker20-save-multi.tar.xz" docker20-save-multi.tar.xz
bzip2 -9 -c "$OUT/crane-pull-multi.tar" >"$NEW/crane-pull-multi.tar.bz2"
publish "$NEW/crane-pull-multi.tar.bz2" crane-pull-multi.tar.bz2

# ---------------------------------------------------------------- read back with the real tools
log "verifying: skopeo inspect docker-archive:FILE:@N and podman load"
VERIFY_ROOT=$WORK/verify
PODMAN_V=(podman --storage-driver vfs --root "$VERIFY_ROOT/root" --runroot "$VERIFY_ROOT/run"
	--tmpdir "$WORK/tmp" --events-backend none --cgroup-manager cgroupfs)
FIXTURES=(podman-save-m.tar podman-save-m-untagged.tar skopeo-copy.tar buildah-push.tar
	docker20-save-multi.tar docker20-save-by-id.tar crane-pull-multi.tar crane-legacy.tar
	crane-pull-digest.tar crane-pull-zstd.tar podman-save-m.tar.gz podman-save-m.tar.zst docker20-save-multi.tar.xz
	crane-pull-multi.tar.bz2)
VERIFY_LOG=$WORK/verify.txt
: >"$VERIFY_LOG"
for f in "${FIXTURES[@]}"; do
	n=$(python3 "$HERE/fixtures-expected.py" --count "$OUT/$f")
	for ((i = 0; i < n; i++)); do
		if out=$("${SKOPEO[@]}" inspect --raw "docker-archive:$OUT/$f:@$i" 2>&1); then
			echo "ok   skopeo inspect $f:@$i" | tee -a "$VERIFY_LOG"
		else
			echo "FAIL skopeo inspect $f:@$i: $out" | tee -a "$VERIFY_LOG"
		fi
	done
	if out=$("${PODMAN_V[@]}" load -q -i "$OUT/$f" 2>&1); then
		echo "ok   podman load $f: $(echo "$out" | tr '\n' ' ')" | tee -a "$VERIFY_LOG"
	else
		echo "FAIL podman load $f: $(echo "$out" | tail -n 1)" | tee -a "$VERIFY_LOG"
	fi
done
start_dockerd "$WORK/dv"
for f in "${FIXTURES[@]}"; do
	if out=$(dk load -i "$OUT/$f" 2>&1); then
		echo "ok   docker load $f: $(echo "$out" | tr '\n' ' ')" | tee -a "$VERIFY_LOG"
	else
		echo "FAIL docker load $f: $(echo "$out" | tail -n 1)" | tee -a "$VERIFY_LOG"
	fi
done
stop_dockerd
# drop the timestamps skopeo puts in its error messages
sed -E 's/time="[^"]*" //' "$VERIFY_LOG" >"$NEW/verify.log"

# ---------------------------------------------------------------- expected.json
log "expected.json"
python3 "$HERE/fixtures-expected.py" --dir "$OUT" "${FIXTURES[@]}" >"$NEW/expected.json"
publish "$NEW/expected.json" expected.json
publish "$NEW/verify.log" verify.log

log "done"
ls -l "$OUT" >&2
grep -c '^ok' "$VERIFY_LOG" | sed 's/^/verification checks passed: /' >&2
if grep '^FAIL' "$VERIFY_LOG" >&2; then
	echo "(failures above are recorded in testdata/archives/README.md where expected)" >&2
fi
