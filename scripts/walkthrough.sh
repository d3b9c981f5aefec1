#!/usr/bin/env bash
# The README's "offline bundle" walkthrough, step for step, as CI runs it. It needs Go and
# Debian's docker-registry; everything happens in a scratch directory and the registry is
# stopped by its PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
reg_pid=
cleanup() {
	if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -tags containers_image_openpgp -o "$work/darc" ./cmd/darc
darc() { "$work/darc" "$@"; }

# 1. A local registry, plain HTTP on 127.0.0.1 (a free port here; 5000 in the README).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$port
cat >"$work/registry.yml" <<CONFIG
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry-data
http:
  addr: $REG
CONFIG
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done

# 2. Seed it with three images, stand-ins for what lives upstream.
darc load -q --tls-verify=false testdata/archives/podman-save-m.tar "docker://$REG/upstream"

# 3. Save the images you need into one bundle (shared layers are stored once).
darc save --tls-verify=false -o "$work/bundle.tar" \
	"docker://$REG/upstream/darc/a:1" "docker://$REG/upstream/darc/a:latest" \
	"docker://$REG/upstream/library/busybox-like:1" "docker://$REG/upstream/c:v1"

# 4. Look at it and check it, byte for byte.
darc ls "$work/bundle.tar"
darc inspect "$work/bundle.tar:$REG/upstream/darc/a:1"
darc verify "$work/bundle.tar"

# 5. On the other side of the air gap: push everything under the mirror's prefix. A name keeps
#    its repository path: $REG/upstream/darc/a:1 becomes $REG/mirror/upstream/darc/a:1.
darc load --tls-verify=false "$work/bundle.tar" "docker://$REG/mirror"

# 6. Check the mirror holds the same images: save them back and compare the image IDs.
darc save -q --tls-verify=false -o "$work/check.tar" "docker://$REG/mirror/upstream/darc/a:1" \
	"docker://$REG/mirror/upstream/library/busybox-like:1" "docker://$REG/mirror/upstream/c:v1"
ids() { darc ls --json "$1" | python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.load(sys.stdin)))'; }
if [ "$(ids "$work/bundle.tar")" != "$(ids "$work/check.tar")" ]; then
	echo "walkthrough: the mirror's images differ from the bundle's" >&2
	exit 1
fi
echo "walkthrough: OK"
