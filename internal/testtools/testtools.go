// Package testtools starts and drives the real programs that darc's tests check against:
// Debian's docker-registry, dockerd 20.10, containerd 1.6 (with ctr), podman and skopeo. Servers listen on 127.0.0.1
// only, keep all state in the test's temp directories and are stopped by the PID the test
// started, never by name.
//
// A test that needs a program that is not installed fails when the environment variable CI
// is "true" (CI installs everything) and is skipped with a message elsewhere.
package testtools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Require returns the path of program (looked up in PATH unless it is absolute), failing the
// test in CI and skipping it elsewhere when it is missing.
func Require(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI but missing: %v (.ci/run installs it)", program, err)
	}
	t.Skipf("%s is not installed (%v); install it to run this test", program, err)
	return ""
}

// shortTempDir returns a temp directory with a short path: unix socket paths are limited to
// about 108 bytes, and t.TempDir() paths can be long.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	return dir
}

// unmountUnder unmounts every mount point at or below dir (dockerd can leave some).
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mps = append(mps, f[1])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon starts cmd and registers a cleanup that stops it by its PID: SIGTERM, then
// SIGKILL after grace.
func startDaemon(t testing.TB, cmd *exec.Cmd, logPath string, grace time.Duration) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// waitFor polls ok until it reports true, failing the test after timeout and showing the log.
func waitFor(t testing.TB, what, logPath string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	logData, _ := os.ReadFile(logPath)
	t.Fatalf("%s did not come up within %s; log:\n%s", what, timeout, tail(logData, 3000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Registry is a running docker-registry.
type Registry struct {
	Addr string // 127.0.0.1:PORT
	Dir  string
}

// BlobUploads counts, per blob digest, the uploads the registry completed (PUTs that finish
// an upload session) and the cross-repository mounts it served, from its access log.
func (r *Registry) BlobUploads(t testing.TB) (uploads, mounts map[string]int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	uploads, mounts = map[string]int{}, map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "/blobs/uploads/") || !strings.Contains(line, "\" 201 ") {
			continue
		}
		key, count := "digest=sha256%3A", uploads
		if strings.Contains(line, "\"POST /v2/") {
			key, count = "mount=sha256%3A", mounts
		}
		if _, rest, ok := strings.Cut(line, key); ok && len(rest) >= 64 {
			count["sha256:"+rest[:64]]++
		}
	}
	return uploads, mounts
}

// StartRegistry starts Debian's docker-registry (the distribution registry) on a free port of
// 127.0.0.1 with its storage in a temp directory. With htpasswd set (the path of a bcrypt
// htpasswd file) it requires basic authentication. It is stopped when the test ends.
func StartRegistry(t testing.TB, htpasswd string) *Registry {
	t.Helper()
	bin := Require(t, "docker-registry")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	if htpasswd != "" {
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: darc-test\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	startDaemon(t, exec.Command(bin, "serve", cfgPath), logPath, 10*time.Second)
	waitFor(t, "docker-registry", logPath, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
	})
	return &Registry{Addr: addr, Dir: dir}
}

// StartAuthRegistry is StartRegistry requiring basic authentication as user with password.
func StartAuthRegistry(t testing.TB, user, password string) *Registry {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return StartRegistry(t, htpasswd)
}

// Docker is a running dockerd and a client for it.
type Docker struct {
	Host string // unix://…
	bin  string
}

// StartDockerd starts Debian's dockerd 20.10 (vfs storage, no iptables, no bridge) with all of
// its state in a temp directory, and extra daemon arguments (--insecure-registry HOST:PORT).
// It is stopped, and its mounts removed, when the test ends.
func StartDockerd(t testing.TB, extra ...string) *Docker {
	t.Helper()
	dockerd := Require(t, "/usr/sbin/dockerd")
	client := Require(t, "/usr/bin/docker") // not another docker earlier on PATH
	dir := shortTempDir(t, "darc-dockerd-")
	host := "unix://" + filepath.Join(dir, "docker.sock")
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "dockerd.log")
	cmd := exec.Command(dockerd, "--config-file", cfg, "--storage-driver", "vfs",
		"--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", host)
	cmd.Args = append(cmd.Args, extra...)
	startDaemon(t, cmd, logPath, 30*time.Second)
	d := &Docker{Host: host, bin: client}
	waitFor(t, "dockerd", logPath, 60*time.Second, func() bool {
		_, err := d.run(context.Background(), "version")
		return err == nil
	})
	return d
}

func (d *Docker) run(ctx context.Context, args ...string) ([]byte, error) {
	return Run(ctx, d.bin, append([]string{"-H", d.Host}, args...)...)
}

// Run runs the docker client against this daemon.
func (d *Docker) Run(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := d.run(context.Background(), args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Try runs the docker client against this daemon and returns its standard output and its error
// (which carries standard error), for a command that may rightly fail.
func (d *Docker) Try(args ...string) ([]byte, error) {
	return d.run(context.Background(), args...)
}

// Ctr is a running containerd and its ctr client.
type Ctr struct {
	Address string // the daemon's gRPC unix socket
	bin     string
}

// StartContainerd starts Debian's containerd 1.6 with its root, state and sockets in a temp
// directory of its own (the CRI plugin disabled: no kubelet here). It is stopped by its PID,
// and its mounts removed, when the test ends.
func StartContainerd(t testing.TB) *Ctr {
	t.Helper()
	containerd := Require(t, "containerd")
	client := Require(t, "ctr")
	dir := shortTempDir(t, "darc-ctd-")
	sock := filepath.Join(dir, "ctd.sock")
	// Everything containerd writes is named here: root, state, both sockets and the opt
	// plugin's directory (/opt/containerd by default).
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	startDaemon(t, exec.Command(containerd, "--config", cfgPath), logPath, 30*time.Second)
	c := &Ctr{Address: sock, bin: client}
	waitFor(t, "containerd", logPath, 60*time.Second, func() bool {
		_, err := c.Try("version")
		return err == nil
	})
	return c
}

// Run runs ctr against this containerd; args usually start with "-n", NAMESPACE.
func (c *Ctr) Run(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := c.Try(args...)
	if err != nil {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Try runs ctr against this containerd and returns its standard output and its error (which
// carries standard error), for a command that may rightly fail.
func (c *Ctr) Try(args ...string) ([]byte, error) {
	return Run(context.Background(), c.bin, append([]string{"--address", c.Address}, args...)...)
}

// Podman runs podman with all of its storage in a temp directory (vfs driver, no events, no
// systemd), as tests need on this machine.
type Podman struct {
	bin  string
	args []string
}

// NewPodman prepares a podman with a fresh store.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	bin := Require(t, "podman")
	dir := shortTempDir(t, "darc-podman-")
	return &Podman{bin: bin, args: []string{
		"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--events-backend", "none", "--cgroup-manager", "cgroupfs",
	}}
}

// Run runs podman with the given arguments.
func (p *Podman) Run(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := Run(context.Background(), p.bin, append(append([]string{}, p.args...), args...)...)
	if err != nil {
		t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Run runs a program and returns its standard output; the error includes standard error.
func Run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			return out, fmt.Errorf("%w: %s", err, tail(stderr.Bytes(), 2000))
		}
		return out, err
	}
	return out, nil
}
