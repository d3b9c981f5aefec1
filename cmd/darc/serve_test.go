package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	distref "github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

// servedProcess is a `darc serve` child process.
type servedProcess struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	stderr *strings.Builder
	done   chan struct{} // closed once stderr is read to its end
}

// startServe starts `darc serve --addr 127.0.0.1:0 ARGS...` in a child process and waits for
// the line that says where it listens. The process is killed when the test ends, if it is
// still running.
func startServe(t *testing.T, args ...string) *servedProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &servedProcess{cmd: cmd, stderr: &strings.Builder{}, done: make(chan struct{})}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	found := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.stderr, line)
			if _, rest, ok := strings.Cut(line, " on http"); ok && strings.HasPrefix(line, "darc: serving ") {
				rest = strings.TrimPrefix(strings.TrimPrefix(rest, "s"), "://")
				found <- strings.TrimSuffix(rest, "/v2/")
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			_ = cmd.Wait()
			<-p.done
			t.Fatalf("darc serve exited before listening:\n%s", p.stderr.String())
		}
		p.addr = addr
	case <-time.After(60 * time.Second):
		t.Fatal("darc serve did not start listening within a minute")
	}
	return p
}

// stop signals the server and returns its exit status and everything it wrote on stderr.
func (p *servedProcess) stop(t *testing.T, sig syscall.Signal) (int, string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	<-p.done
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return p.cmd.ProcessState.ExitCode(), p.stderr.String()
}

// pullWithCrane pulls every tag of every archive through the registry at addr with
// go-containerregistry's remote package and checks the config and layer digests against
// what the archive says (ReadableArchive.Inspect, as `darc inspect` shows). A NAME:TAG in
// several archives is checked against the first, which serves it.
func pullWithCrane(t *testing.T, addr string, opts []name.Option, ropts []remote.Option, prefix string, paths ...string) int {
	t.Helper()
	pulled := 0
	seen := map[string]bool{}
	for _, path := range paths {
		a, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range a.Images() {
			for _, tag := range img.Tags {
				want, err := a.Inspect(reference.TagSelector(tag))
				if err != nil {
					t.Fatal(err)
				}
				repo := strings.TrimPrefix(prefix+"/"+distref.Path(tag), "/")
				if seen[repo+":"+tag.Tag()] {
					continue
				}
				seen[repo+":"+tag.Tag()] = true
				ref, err := name.ParseReference(addr+"/"+repo+":"+tag.Tag(), opts...)
				if err != nil {
					t.Fatal(err)
				}
				got, err := remote.Image(ref, ropts...)
				if err != nil {
					t.Fatalf("pull %s: %v", ref, err)
				}
				cfg, err := got.ConfigName()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.String() != want.ID.String() {
					t.Errorf("%s: config %s, want %s", ref, cfg, want.ID)
				}
				layers, err := got.Layers()
				if err != nil {
					t.Fatal(err)
				}
				if len(layers) != len(want.Layers) {
					t.Fatalf("%s: %d layers, want %d", ref, len(layers), len(want.Layers))
				}
				for i, l := range layers {
					d, err := l.Digest()
					if err != nil {
						t.Fatal(err)
					}
					if d.String() != want.Layers[i].Digest.String() {
						t.Errorf("%s: layer %d is %s, want %s", ref, i, d, want.Layers[i].Digest)
					}
					rc, err := l.Compressed() // reads the blob; remote checks its digest
					if err != nil {
						t.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						t.Fatalf("%s: layer %d: %v", ref, i, err)
					}
					if err := rc.Close(); err != nil {
						t.Fatalf("%s: layer %d: %v", ref, i, err)
					}
				}
				pulled++
			}
		}
		a.Close()
	}
	return pulled
}

// TestServeCommand runs `darc serve` on a plain archive and a bzip2 one (spooled, with a
// message), pulls every image with go-containerregistry, checks one log line per request,
// and stops it with SIGTERM: status 143, shut down gracefully.
func TestServeCommand(t *testing.T) {
	plainPath, bz2 := fixture("podman-save-m.tar"), fixture("crane-pull-multi.tar.bz2")
	p := startServe(t, "--verbose", "--prefix", "mirror", plainPath, bz2)
	n := pullWithCrane(t, p.addr, []name.Option{name.Insecure}, nil, "mirror", plainPath, bz2)
	if n < 6 {
		t.Fatalf("pulled %d tags", n)
	}
	resp, err := http.Get("http://" + p.addr + "/v2/mirror/busybox-like/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("alias: %s", resp.Status)
	}
	status, stderr := p.stop(t, syscall.SIGTERM)
	if status != 143 {
		t.Errorf("exit status %d, want 143\n%s", status, stderr)
	}
	for _, want := range []string{
		"crane-pull-multi.tar.bz2 is not a plain tar or a seekable .tar.zst: decompressing it once",
		`GET "/v2/mirror/busybox-like/tags/list" 200 `,
		"interrupted by SIGTERM; stopped serving after ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if lines := strings.Count(stderr, `"/v2/`); lines < 3*n {
		t.Errorf("%d request lines for %d pulls:\n%s", lines, n, stderr)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, and returns their
// paths and a pool trusting it.
func writeCert(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "darc test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// TestServeTLSAndAuth serves HTTPS with basic authentication: no credentials or wrong ones
// are 401 with a Basic challenge, right ones pull every image; SIGINT stops it with 130.
func TestServeTLSAndAuth(t *testing.T) {
	certPath, keyPath, pool := writeCert(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(users, []byte("# users\nalice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	arc := fixture("podman-save-m.tar")
	p := startServe(t, "--cert", certPath, "--key", keyPath, "--htpasswd", users, arc)
	if !strings.Contains(p.stderr.String(), "on https://") {
		t.Errorf("start-up line does not say https:\n%s", p.stderr.String())
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	client := &http.Client{Transport: transport}
	for _, c := range []struct {
		user, password string
		want           int
	}{{"", "", 401}, {"alice", "wrong", 401}, {"bob", "s3cret", 401}, {"alice", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", "https://"+p.addr+"/v2/", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.password)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s/%s: %s, want %d", c.user, c.password, resp.Status, c.want)
		}
		if c.want == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="darc"` {
			t.Errorf("401 without a Basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
		}
	}
	ropts := []remote.Option{remote.WithTransport(transport), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})}
	if n := pullWithCrane(t, p.addr, nil, ropts, "", arc); n != 4 {
		t.Errorf("pulled %d tags, want 4", n)
	}
	if status, stderr := p.stop(t, syscall.SIGINT); status != 130 {
		t.Errorf("exit status %d, want 130\n%s", status, stderr)
	}
}

// TestServeIdleConnections: a thousand connections that never send a request do not keep
// the server from answering.
func TestServeIdleConnections(t *testing.T) {
	p := startServe(t, fixture("podman-save-m.tar"))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 1000 {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if n := pullWithCrane(t, p.addr, []name.Option{name.Insecure}, nil, "", fixture("podman-save-m.tar")); n != 4 {
		t.Errorf("pulled %d tags, want 4", n)
	}
	if status, stderr := p.stop(t, syscall.SIGTERM); status != 143 {
		t.Errorf("exit status %d, want 143\n%s", status, stderr)
	}
}

// TestServeStartupErrors: what cannot work is refused before listening, with a message.
func TestServeStartupErrors(t *testing.T) {
	dir := t.TempDir()
	md5 := filepath.Join(dir, "md5")
	if err := os.WriteFile(md5, []byte("alice:$apr1$abc$0123456789abcdefghijkl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sha := filepath.Join(dir, "sha")
	if err := os.WriteFile(sha, []byte("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	arc := fixture("podman-save-m.tar")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve"}, "serve needs at least one ARCHIVE"},
		{[]string{"serve", "--cert", "x.crt", arc}, "--cert and --key go together"},
		{[]string{"serve", "--htpasswd", md5, arc}, `user "alice": an MD5 (apr1) hash; only bcrypt entries are supported`},
		{[]string{"serve", "--htpasswd", sha, arc}, "a SHA-1 hash; only bcrypt"},
		{[]string{"serve", "--htpasswd", empty, arc}, "no user in the file"},
		{[]string{"serve", "--prefix", "Bad/", arc}, "--prefix"},
		{[]string{"serve", "--addr", "127.0.0.1:99999", arc}, "--addr 127.0.0.1:99999"},
		{[]string{"serve", filepath.Join(dir, "missing.tar")}, "missing.tar"},
	} {
		t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
			_, _, err := run(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
