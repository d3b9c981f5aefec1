//go:build linux

package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime/debug"
	"sync"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/benchwork"
)

// The benchmark of darc serve (issue 14): 8 clients at once pull all 12 workload images
// (each manifest, then each blob of them once per client, read 256 KiB at a time and
// dropped) over HTTP on 127.0.0.1 from the handler serving the workload's 12-image
// docker-archive (darc) or its seekable bundle (darc-bundle), beside 8 `cat` processes
// reading the plain archive from the page cache at once (cat, the peer) and, for
// comparison only, 8 `cat | cat` (cat-pipe). clients32 is darc with 32 clients, for its peak
// RSS. Only variants named darc* are judged: the table checks throughput ≥ 80 % of cat's
// (time at most 1.25 ×) and peak RSS under 100 MB. The clients run in the same child process
// as the server, so its CPU time and peak RSS cover both. The server hashes each blob once,
// before it first sends it, which the figures include.
//
// Run:
//
//	go test -tags containers_image_openpgp -run '^$' -bench 'Serve' -benchtime 1x -count 2 ./archive/

// serveClients is how many clients pull at once; manyClients, in clients32, shows that memory
// does not grow with them (the 32 concurrent pulls).
const (
	serveClients = 8
	manyClients  = 32
)

func BenchmarkServe(b *testing.B) {
	w, err := benchwork.Ensure(context.Background(), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	plain, err := w.DockerArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	bundle, err := w.BundleArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(plain)
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []string{"darc", "darc-bundle", "clients32", "cat", "cat-pipe"} {
		b.Run(v, func(b *testing.B) {
			path := plain
			if v == "darc-bundle" {
				path = bundle
			}
			// Bytes: what the clients (or the cats) read, 8 times the archive's blobs (or
			// the archive itself, which is those blobs and a little metadata).
			bytes := serveClients * st.Size()
			if v == "clients32" {
				bytes = manyClients * st.Size()
			}
			args := map[string]string{"archive": path}
			if v == "clients32" {
				args["clients"] = "32"
			}
			benchwork.RunChild(b, "serve/"+v, benchwork.ChildOptions{Test: "TestBenchChildServe", Args: args, Bytes: bytes})
		})
	}
}

// TestBenchChildServe runs one serve benchmark variant when the test binary is started by
// benchwork.RunChild; in a normal test run it skips.
func TestBenchChildServe(t *testing.T) {
	benchwork.ChildMain(t, map[string]benchwork.Variant{
		"serve/darc":        serveAndPull,
		"serve/darc-bundle": serveAndPull,
		"serve/clients32":   serveAndPull,
		"serve/cat":         func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) { return cats(ctx, env, "") },
		"serve/cat-pipe": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return cats(ctx, env, "| cat")
		},
	})
}

// cats runs serveClients `cat ARCHIVE PIPE > /dev/null` at once: cat alone (the issue's
// peer) reads the page cache into a buffer and writes it to /dev/null, where nothing is
// copied; piped into another cat (cat-pipe, shown beside it) the bytes also cross from one
// process to another, as they cross the loopback from server to clients.
func cats(ctx context.Context, env *benchwork.Env, pipe string) (benchwork.Outcome, error) {
	g, ctx := errgroup.WithContext(ctx)
	for range serveClients {
		g.Go(func() error {
			return exec.CommandContext(ctx, "sh", "-c", `cat "$1" `+pipe+` > /dev/null`, "sh", env.Args["archive"]).Run()
		})
	}
	return benchwork.Outcome{Spooled: -1}, g.Wait()
}

// serveMemoryLimit is the soft memory limit cmd/darc's main sets (softMemoryLimit) unless
// GOMEMLIMIT is given: the benchmark measures the handler as darc serve runs it. Without it
// the garbage collector lets the heap of a bundle's server grow to twice its live size (the
// seekable reader allocates each frame it decompresses afresh).
const serveMemoryLimit = 128 << 20

// serveAndPull serves the archive and pulls every image with serveClients clients at once.
func serveAndPull(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	a, err := archive.Open(env.Args["archive"])
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	var logMu sync.Mutex
	var logged []string
	h, err := archive.NewHandler([]*archive.ReadableArchive{a}, archive.WithServeLog(func(s string) { logMu.Lock(); logged = append(logged, s); logMu.Unlock() }))
	if err != nil {
		return benchwork.Outcome{}, err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: manyClients, DisableCompression: true}}
	var images []servedTag
	for i := range env.Work.Images {
		tag, err := env.Work.Tag(i)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		images = append(images, servedTag{distref.Path(tag), tag.Tag()})
	}
	clients := serveClients
	if env.Args["clients"] != "" {
		clients = manyClients
	}
	g, ctx := errgroup.WithContext(ctx)
	for range clients {
		g.Go(func() error { return pullWorkload(ctx, client, srv.URL, images) })
	}
	err = g.Wait()
	if len(logged) > 0 && err == nil {
		err = fmt.Errorf("the server logged: %v", logged)
	}
	return benchwork.Outcome{Spooled: 0}, err
}

// clientBuffer is how much a client reads from its connection at once, as a client writing
// layers to disk in large chunks would (io.Discard's own 8 KiB reads would make the clients'
// system calls most of the benchmark's time).
const clientBuffer = 256 << 10

// servedTag is one image the benchmark pulls.
type servedTag struct{ name, tag string }

// pullWorkload pulls each image and each blob of them once, as one client pulling them all.
func pullWorkload(ctx context.Context, client *http.Client, base string, images []servedTag) error {
	seen := map[digest.Digest]bool{}
	buf := make([]byte, clientBuffer)
	get := func(path string, w io.Writer) error {
		req, err := http.NewRequestWithContext(ctx, "GET", base+"/v2/"+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{w}, resp.Body, buf)
		if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
			err = fmt.Errorf("GET %s: %d bytes of %d", path, n, resp.ContentLength)
		}
		return err
	}
	for _, img := range images {
		var buf bytes.Buffer
		if err := get(img.name+"/manifests/"+img.tag, &buf); err != nil {
			return err
		}
		var m struct {
			Config struct{ Digest digest.Digest }
			Layers []struct{ Digest digest.Digest }
		}
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			return fmt.Errorf("manifest %s:%s: %w", img.name, img.tag, err)
		}
		blobs := []digest.Digest{m.Config.Digest}
		for _, l := range m.Layers {
			blobs = append(blobs, l.Digest)
		}
		for _, d := range blobs {
			if seen[d] {
				continue
			}
			seen[d] = true
			if err := get(img.name+"/blobs/"+d.String(), io.Discard); err != nil {
				return err
			}
		}
	}
	return nil
}
