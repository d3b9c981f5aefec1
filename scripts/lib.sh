# shellcheck shell=bash
# Helpers shared by scripts/make-fixtures.sh and the compatibility tests.
#
# Source this file; it defines functions only and changes no shell options.
#
#   start_dockerd DIR        start Debian's dockerd 20.10 with all of its state under DIR;
#                            sets DOCKER_HOST, DOCKERD_PID, DOCKERD_DIR and defines the
#                            function `dk` (= /usr/bin/docker against that daemon)
#   stop_dockerd             stop it by its PID, unmount what it left under DIR
#   start_registry DIR [HTPASSWD]
#                            start Debian's docker-registry (distribution 2.8) on 127.0.0.1 and
#                            a free port (or $REGISTRY_PORT if set and free), storage under DIR;
#                            with HTPASSWD (a bcrypt htpasswd file) basic auth is required;
#                            sets REGISTRY_ADDR (127.0.0.1:PORT), REGISTRY_PID, REGISTRY_DIR
#   stop_registry            stop it by its PID
#   unmount_under DIR        unmount every mount point at or below DIR (deepest first)
#   ensure_packages PKG...   apt-get install the Debian packages that are not installed yet
#   ensure_crane             install crane v0.22.1 with `go install` if it is missing; sets CRANE
#
# Servers listen on 127.0.0.1 only and are stopped by the PID we started, never by name.

DARC_DOCKER=${DARC_DOCKER:-/usr/bin/docker}
DARC_DOCKERD=${DARC_DOCKERD:-/usr/sbin/dockerd}
DARC_REGISTRY=${DARC_REGISTRY:-/usr/bin/docker-registry}
DARC_CRANE_VERSION=${DARC_CRANE_VERSION:-v0.22.1}

_darc_log() { printf '[lib] %s\n' "$*" >&2; }

ensure_packages() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if ((${#missing[@]})); then
		_darc_log "installing: ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

ensure_crane() {
	local bin
	bin="$(go env GOPATH)/bin/crane"
	if [[ ! -x $bin ]] || [[ $("$bin" version 2>/dev/null) != "$DARC_CRANE_VERSION" ]]; then
		_darc_log "installing crane $DARC_CRANE_VERSION"
		(cd / && GOFLAGS= go install "github.com/google/go-containerregistry/cmd/crane@$DARC_CRANE_VERSION")
	fi
	CRANE=$bin
}

unmount_under() {
	local dir mp
	dir=$(readlink -f "$1" 2>/dev/null || printf '%s' "$1")
	# /proc/self/mounts escapes spaces as \040; our scratch paths have none.
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
		sort -r | while read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
	done
}

# _darc_stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL.
_darc_stop_pid() {
	local pid=$1 wait=${2:-30} i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < wait * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		_darc_log "pid $pid did not stop; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# reap it if it is our child
	wait "$pid" 2>/dev/null || true
}

# _darc_free_port [PREFERRED]: print PREFERRED if it is free on 127.0.0.1, else a free port.
_darc_free_port() {
	python3 - "${1:-0}" <<'EOF'
import socket, sys
want = int(sys.argv[1])
for port in ([want] if want else []) + [0]:
    s = socket.socket()
    # like Go's net.Listen: a port held only by TIME_WAIT connections counts as free
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    print(s.getsockname()[1])
    s.close()
    break
EOF
}

dk() { "$DARC_DOCKER" -H "$DOCKER_HOST" "$@"; }

start_dockerd() {
	local dir=$1 i
	mkdir -p "$dir"
	dir=$(readlink -f "$dir")
	DOCKERD_DIR=$dir
	mkdir -p "$dir/data" "$dir/exec"
	printf '{}\n' >"$dir/daemon.json"
	# unix socket paths are limited to ~108 bytes: keep DIR short
	if ((${#dir} > 80)); then
		_darc_log "start_dockerd: directory path too long for a unix socket: $dir"
		return 1
	fi
	DOCKER_HOST="unix://$dir/docker.sock"
	"$DARC_DOCKERD" \
		--config-file "$dir/daemon.json" \
		--storage-driver vfs \
		--iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
		--bridge=none \
		--data-root "$dir/data" \
		--exec-root "$dir/exec" \
		--pidfile "$dir/dockerd.pid" \
		-H "$DOCKER_HOST" \
		>"$dir/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	export DOCKER_HOST DOCKERD_PID DOCKERD_DIR
	for ((i = 0; i < 600; i++)); do
		if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
			_darc_log "dockerd exited; log follows"
			tail -n 30 "$dir/dockerd.log" >&2
			DOCKERD_PID=
			return 1
		fi
		if "$DARC_DOCKER" -H "$DOCKER_HOST" version >/dev/null 2>&1; then
			_darc_log "dockerd pid $DOCKERD_PID on $DOCKER_HOST"
			return 0
		fi
		sleep 0.1
	done
	_darc_log "dockerd did not answer within 60s"
	stop_dockerd
	return 1
}

stop_dockerd() {
	local cpid=
	[[ -n ${DOCKERD_DIR:-} ]] || return 0
	# dockerd starts its own containerd and records its pid here
	if [[ -f $DOCKERD_DIR/exec/containerd/containerd.pid ]]; then
		cpid=$(cat "$DOCKERD_DIR/exec/containerd/containerd.pid" 2>/dev/null || true)
	fi
	_darc_stop_pid "${DOCKERD_PID:-}" 30
	# normally dockerd stops its containerd itself; make sure
	_darc_stop_pid "$cpid" 10
	unmount_under "$DOCKERD_DIR"
	DOCKERD_PID=
	unset DOCKER_HOST
}

start_registry() {
	local dir=$1 htpasswd=${2:-} port i code
	mkdir -p "$dir/data"
	dir=$(readlink -f "$dir")
	REGISTRY_DIR=$dir
	port=$(_darc_free_port "${REGISTRY_PORT:-0}")
	REGISTRY_ADDR="127.0.0.1:$port"
	{
		printf 'version: 0.1\n'
		printf 'log:\n  level: warn\n  accesslog:\n    disabled: true\n'
		printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$dir/data"
		printf 'http:\n  addr: %s\n' "$REGISTRY_ADDR"
		if [[ -n $htpasswd ]]; then
			printf 'auth:\n  htpasswd:\n    realm: darc-test\n    path: %s\n' "$(readlink -f "$htpasswd")"
		fi
	} >"$dir/config.yml"
	"$DARC_REGISTRY" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
	REGISTRY_PID=$!
	export REGISTRY_ADDR REGISTRY_PID REGISTRY_DIR
	for ((i = 0; i < 300; i++)); do
		if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
			_darc_log "docker-registry exited; log follows"
			tail -n 30 "$dir/registry.log" >&2
			REGISTRY_PID=
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" 2>/dev/null || true)
		if [[ $code == 200 || $code == 401 ]]; then
			_darc_log "docker-registry pid $REGISTRY_PID on $REGISTRY_ADDR"
			return 0
		fi
		sleep 0.1
	done
	_darc_log "docker-registry did not answer within 30s"
	stop_registry
	return 1
}

stop_registry() {
	_darc_stop_pid "${REGISTRY_PID:-}" 10
	REGISTRY_PID=
}
