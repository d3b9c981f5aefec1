# shellcheck shell=bash
# Sourced by scripts/make-ctr-fixtures.sh verify: read every fixture in $OUT with the real tools
# and write what they did to $OUT/verify.log. Uses $HERE, $OUT and $WORK (a mktemp dir that the
# caller removes). Needs root.

# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

if [[ $(id -u) != 0 ]]; then
	echo "make-ctr-fixtures.sh verify: must run as root" >&2
	exit 1
fi
ensure_packages skopeo podman containerd docker.io python3

FIXTURES=(all-platforms.tar one-platform.tar manifests-only.tar oci-only-arm64.tar manifest-list.tar two-names.tar foreign-layer.tar)
LOG=$WORK/verify.log
: >"$LOG"
mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp

# Scratch paths are replaced by $W in the log, so that it does not change from run to run.
# So are the random parts of temp names that the tools print in errors.
# skopeo's log timestamps are dropped, and podman's "Copying blob" lines, which come in the order
# its parallel copies start, are sorted within each run of them.
clean() {
	WORK=$WORK OUT=$OUT python3 -c '
import os, re, sys
work, out = os.environ["WORK"], os.environ["OUT"]
lines, run = [], []
for line in sys.stdin.read().splitlines():
    line = line.replace(work, "$W").replace(out + "/", "")
    line = re.sub(r"docker-import-[0-9]+", "docker-import-N", line)
    line = re.sub(r"/oci[0-9]+/", "/ociN/", line)
    line = re.sub(r"^(\s*)time=\"[^\"]*\" ", r"\1", line)
    if line.startswith("Copying blob "):
        run.append(line)
        continue
    lines += sorted(run) + [line]
    run = []
lines += sorted(run)
print("\n".join(lines))'
}
say() { printf '%s\n' "$*" | clean >>"$LOG"; }
# run CMD...: the command, its combined output and its exit status, into the log.
run() {
	local rc=0 out
	say "\$ $*"
	out=$(cd "$OUT" && timeout 300 "$@" 2>&1) || rc=$?
	[[ -z $out ]] || printf '%s\n' "$out" | clean | sed 's/^/    /' >>"$LOG"
	say "    => exit $rc"
}
# digest of what skopeo inspect --raw prints, and its mediaType
rawsum() {
	python3 -c '
import hashlib, json, sys
b = sys.stdin.buffer.read()
print("sha256:" + hashlib.sha256(b).hexdigest(), json.loads(b).get("mediaType"))'
}

{
	printf '# Real tools reading testdata/archives/ctr (written by scripts/make-ctr-fixtures.sh verify)\n'
	printf '# skopeo %s, podman %s, containerd %s (ctr), docker %s\n\n' \
		"$(dpkg-query -W -f='${Version}' skopeo)" "$(dpkg-query -W -f='${Version}' podman)" \
		"$(dpkg-query -W -f='${Version}' containerd)" "$(dpkg-query -W -f='${Version}' docker.io)"
} >>"$LOG"

# ---------------------------------------------------------------- skopeo
printf '## skopeo inspect\n\n' >>"$LOG"
for f in "${FIXTURES[@]}"; do
	say "### $f"
	rc=0
	raw=$(cd "$OUT" && skopeo inspect --raw "oci-archive:$f" 2>&1) || rc=$?
	say "\$ skopeo inspect --raw oci-archive:$f"
	if ((rc == 0)); then say "    $(printf '%s' "$raw" | rawsum)"; else say "    $raw"; fi
	say "    => exit $rc"
	if [[ $f == two-names.tar ]]; then
		for ref in latest 1; do
			rc=0
			raw=$(cd "$OUT" && skopeo inspect --raw "oci-archive:$f:$ref" 2>&1) || rc=$?
			say "\$ skopeo inspect --raw oci-archive:$f:$ref"
			if ((rc == 0)); then say "    $(printf '%s' "$raw" | rawsum)"; else say "    $raw"; fi
			say "    => exit $rc"
		done
	fi
	run skopeo inspect --format '{{.Name}} {{.Digest}} {{.Os}}/{{.Architecture}} tags={{.RepoTags}} layers={{len .Layers}}' "docker-archive:$f"
	if [[ $f == two-names.tar ]]; then
		run skopeo inspect --format '{{.Name}} {{.Digest}} {{.Os}}/{{.Architecture}} layers={{len .Layers}}' "docker-archive:$f:@1"
	fi
	say ""
done

# ---------------------------------------------------------------- podman load
printf '## podman load (vfs, a fresh store per file)\n\n' >>"$LOG"
for f in "${FIXTURES[@]}"; do
	root=$WORK/podman/${f%.tar}
	P=(podman --storage-driver vfs --root "$root/root" --runroot "$root/run" --tmpdir "$WORK/tmp"
		--events-backend none --cgroup-manager cgroupfs)
	say "### $f"
	run "${P[@]}" load -i "$f"
	run "${P[@]}" images --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}'
	say ""
	unmount_under "$root"
done

# ---------------------------------------------------------------- ctr import
printf '## ctr import (containerd 1.6, --no-unpack)\n\n' >>"$LOG"
CTD=$WORK/ctd
mkdir -p "$CTD"
cat >"$CTD/config.toml" <<TOML
version = 2
root = "$CTD/root"
state = "$CTD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD/ctd.sock"
[ttrpc]
  address = "$CTD/ctd.sock.ttrpc"
[debug]
  address = ""
TOML
containerd --config "$CTD/config.toml" >"$CTD/log" 2>&1 &
CTD_PID=$!
for ((i = 0; i < 300; i++)); do
	ctr --address "$CTD/ctd.sock" version >/dev/null 2>&1 && break
	kill -0 "$CTD_PID" 2>/dev/null || { tail -n 30 "$CTD/log" >&2; exit 1; }
	sleep 0.1
done
CTR=(ctr --address "$CTD/ctd.sock")
n=0
for f in "${FIXTURES[@]}"; do
	say "### $f"
	for mode in host all; do
		n=$((n + 1))
		ns=ns$n
		args=(--no-unpack)
		[[ $mode == all ]] && args+=(--all-platforms)
		run "${CTR[@]}" -n "$ns" images import "${args[@]}" "$f"
		run "${CTR[@]}" -n "$ns" images ls
		# every blob imported (without -q the age column changes from run to run)
		say "\$ ctr -n $ns content ls -q  (sorted)"
		"${CTR[@]}" -n "$ns" content ls -q 2>&1 | sort | sed 's/^/    /' >>"$LOG" || true
	done
	say ""
done
_darc_stop_pid "$CTD_PID" 30
unmount_under "$CTD"

# ---------------------------------------------------------------- docker load
printf '## docker load (dockerd 20.10, vfs)\n\n' >>"$LOG"
start_dockerd "$WORK/dk"
trap 'stop_dockerd; rm -rf "$WORK"' EXIT
for f in "${FIXTURES[@]}"; do
	say "### $f"
	run "$DARC_DOCKER" -H "$DOCKER_HOST" load -i "$f"
	run "$DARC_DOCKER" -H "$DOCKER_HOST" images --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}'
	ids=$("$DARC_DOCKER" -H "$DOCKER_HOST" images -q --no-trunc | sort -u)
	if [[ -n $ids ]]; then
		# shellcheck disable=SC2086
		"$DARC_DOCKER" -H "$DOCKER_HOST" rmi -f $ids >/dev/null 2>&1 || true
	fi
	say ""
done
stop_dockerd

sed -i 's/[[:space:]]*$//' "$LOG"
cp "$LOG" "$OUT/verify.log.tmp"
mv -f "$OUT/verify.log.tmp" "$OUT/verify.log"
echo "wrote $OUT/verify.log" >&2
