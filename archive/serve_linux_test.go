//go:build linux

package archive_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
)

// TestServeDecompressedLayerDamaged: an xz layer member damaged after the server measured
// it, in a way the change checks do not see (through a descriptor opened before the file's
// name was removed, its modification time put back), is cut off and logged, not served.
func TestServeDecompressedLayerDamaged(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Docker24, XzMembers: true})
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, data)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	a := openServed(t, path)
	d, err := a.Inspect(tagSelector(t, "busybox:latest"))
	if err != nil {
		t.Fatal(err)
	}
	h, serveLog := loggedHandler(t, a)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pullAll(t, srv.Client(), srv.URL) // the layer sizes are known from here on

	// Damage the middle of the largest layer member (the xz stream, as stored).
	l := d.Layers[len(d.Layers)-1]
	stored := readMember(t, data, l.Member)
	at := bytes.Index(data, stored)
	if at < 0 {
		t.Fatal("member bytes not found")
	}
	mid := int64(at + len(stored)/2)
	writeUnseen(t, unlinkedWriter(t, path), mid, data[mid]^0x55, st.ModTime())
	resp, err := srv.Client().Get(srv.URL + "/v2/library/busybox/blobs/" + l.Digest.String())
	if err == nil {
		var got []byte
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && digest.FromBytes(got) == l.Digest {
			t.Fatal("a damaged layer was served whole")
		}
	}
	if err == nil {
		t.Error("GET of a damaged layer completed without error, want the response cut off")
	}
	// net/http's client sends a GET again once when the connection closes before any byte
	// of an answer on a reused connection: one line per attempt.
	logged := serveLog.get()
	if len(logged) == 0 || len(logged) > 2 || !strings.Contains(strings.Join(logged, "\n"), "response cut off") {
		t.Errorf("logged %q", logged)
	}
}

// TestServeMismatchRemembered: a layer whose bytes do not match its digest when first asked
// for is answered 500 from then on, by GET and by HEAD, even once its bytes are put right in
// a way the change checks do not see (through a descriptor opened before the file's name was
// removed, its modification time put back): the file cannot change unseen otherwise.
func TestServeMismatchRemembered(t *testing.T) {
	path := copyFixture(t, "podman-save-m.tar")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	a := openServed(t, path)
	h := archive.Handler(a)
	d, err := a.Inspect(tagSelector(t, "example.com/darc/a:1"))
	if err != nil {
		t.Fatal(err)
	}
	l := d.Layers[len(d.Layers)-1]
	content := readBlob(t, a, "example.com/darc/a:1", l.Digest)
	at := int64(bytes.Index(readFile(t, path), content))
	if at < 0 {
		t.Fatal("layer bytes not found in the archive")
	}
	f := unlinkedWriter(t, path)
	blob := "/v2/darc/a/blobs/" + l.Digest.String()
	writeUnseen(t, f, at+100, content[100]^0xff, st.ModTime())
	if r := serveReq(t, h, "HEAD", blob, nil); r.status != 200 {
		t.Errorf("HEAD before any GET: %d, want 200 (nothing read yet)", r.status)
	}
	if r := serveReq(t, h, "GET", blob, nil); r.status != 500 {
		t.Errorf("GET of the damaged layer: %d, want 500", r.status)
	}
	writeUnseen(t, f, at+100, content[100], st.ModTime())
	for _, method := range []string{"GET", "HEAD"} {
		if r := serveReq(t, h, method, blob, nil); r.status != 500 {
			t.Errorf("%s once the bytes are put right unseen: %d, want 500 (the mismatch remembered)", method, r.status)
		}
	}
}

// TestServeRenamedOver: a new file renamed over the archive's path is not a change: the
// server keeps serving the file it opened. A change of the served file's mode is one.
func TestServeRenamedOver(t *testing.T) {
	path := copyFixture(t, "podman-save-m.tar")
	a := openServed(t, path)
	h := archive.Handler(a)
	d, err := a.Inspect(tagSelector(t, "example.com/darc/a:1"))
	if err != nil {
		t.Fatal(err)
	}
	blob := "/v2/darc/a/blobs/" + d.Layers[0].Digest.String()
	other := path + ".new"
	if err := os.WriteFile(other, []byte("something else"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if r := serveReq(t, h, "GET", blob, nil); r.status != 200 || digest.FromBytes(r.body) != d.Layers[0].Digest {
		t.Errorf("GET after a new file was renamed over the archive: %d", r.status)
	}

	path = copyFixture(t, "podman-save-m.tar")
	a = openServed(t, path)
	h = archive.Handler(a)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := serveReq(t, h, "GET", blob, nil); r.status != 500 {
		t.Errorf("GET after the archive's mode changed: %d, want 500", r.status)
	}
}

// unlinkedWriter opens path for writing and removes its name: the file is still the one a
// server opened, but no longer has a name, so its status change time is not compared. It is
// closed when the test ends.
func unlinkedWriter(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeUnseen writes byte b at off through f and puts the file's times back to mtime
// (through the descriptor, in /proc: the file has no name), so that nothing a server
// compares shows the change.
func writeUnseen(t *testing.T, f *os.File, off int64, b byte, mtime time.Time) {
	t.Helper()
	if _, err := f.WriteAt([]byte{b}, off); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), mtime, mtime); err != nil {
		t.Fatal(err)
	}
}
