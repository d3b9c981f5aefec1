package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// splitSource writes an archive of n images with 7 MiB random layers (incompressible, so
// that parts of archive.MinSplitSize hold about one each) and opens it.
func splitSource(t *testing.T, n int) *archive.ReadableArchive {
	t.Helper()
	var images []archivetest.Image
	for i := range n {
		images = append(images, archivetest.Image{
			Tags:   []string{"example.com/split/img:" + string(rune('a'+i))},
			Layers: [][]byte{archivetest.Layer(int64(i+1), 1, 7<<20)},
		})
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	return openBytes(t, data)
}

// writeSplit writes the n images of splitSource to dir as plain.tar and as the split
// b.tar.zst, and returns the plain archive's path, the split one's name and its parts.
func writeSplit(t *testing.T, dir string, n int) (plain, name string, got []string) {
	t.Helper()
	in := splitSource(t, n)
	plain, name = filepath.Join(dir, "plain.tar"), filepath.Join(dir, "b.tar.zst")
	if err := mergeInto(t, in, plain, true); err != nil {
		t.Fatal(err)
	}
	if err := mergeInto(t, in, name, true, splitOpts...); err != nil {
		t.Fatal(err)
	}
	got = parts(t, name)
	if len(got) < 3 {
		t.Fatalf("parts %q; want at least 3 for %d×7 MiB of random layers", got, n)
	}
	return plain, name, got
}

// mergeInto writes every image of in to path with opts, committing only if commit.
func mergeInto(t *testing.T, in *archive.ReadableArchive, path string, commit bool, opts ...archive.CreateOption) error {
	t.Helper()
	w, err := archive.Create(path, opts...)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{in}); err != nil {
		t.Fatal(err)
	}
	if !commit {
		return nil
	}
	return w.Commit()
}

// parts returns the names in dir of the parts of NAME, in order.
func parts(t *testing.T, name string) []string {
	t.Helper()
	got, _ := filepath.Glob(name + ".[0-9][0-9][0-9]")
	return got
}

var splitOpts = []archive.CreateOption{archive.WithCompression(archive.CompressZstd, 0), archive.WithSplit(archive.MinSplitSize)}

// TestCreateSplit: WithSplit writes parts of at most the split size, each a valid zstd file;
// concatenated they are the .tar.zst of the same archive, which is the plain archive
// compressed; Open reads the set in place from its first part, and it verifies.
func TestCreateSplit(t *testing.T) {
	dir := t.TempDir()
	plain, _, got := writeSplit(t, dir, 3)
	wtNoLeftovers(t, dir, append([]string{"plain.tar"}, baseNames(got)...)...)
	var all []byte
	for _, p := range got {
		b := readFile(t, p)
		if len(b) > archive.MinSplitSize {
			t.Errorf("%s: %d bytes, more than the split size", p, len(b))
		}
		all = append(all, b...)
		if zstdCLI, err := exec.LookPath("zstd"); err == nil {
			if out, err := exec.Command(zstdCLI, "-t", p).CombinedOutput(); err != nil {
				t.Errorf("zstd -t %s: %v\n%s", p, err, out)
			}
		}
	}
	dec, err := zstd.NewReader(bytes.NewReader(all))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tarBytes, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tarBytes, readFile(t, plain)) {
		t.Error("the parts concatenated and decompressed are not the plain archive")
	}
	if spool, err := archive.NeedsSpool(got[0]); err != nil || spool {
		t.Errorf("NeedsSpool(%s) = %v, %v; want false", got[0], spool, err)
	}
	a, err := archive.Open(got[0], archive.WithWarnings(func(s string) { t.Errorf("warning: %s", s) }))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if probs := a.Verify(context.Background(), 2); len(probs) > 0 {
		t.Errorf("verify: %v", probs)
	}
	if gotImgs, want := wtReadBack(t, got[0]), wtReadBack(t, plain); !wtEqual(gotImgs, want) {
		t.Errorf("the split archive reads back %+v, want %+v", gotImgs, want)
	}
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// TestCreateSplitReplace: an existing set is refused without WithOverwrite; with it, the new
// set replaces the old one, keeping each replaced part's permissions, and parts of the old set
// beyond the new one's are removed, so that the first part does not lead a reader into a
// stale one. Closing without Commit leaves the directory as it was.
func TestCreateSplitReplace(t *testing.T) {
	dir := t.TempDir()
	_, name, before := writeSplit(t, dir, 3)
	if err := os.Chmod(before[0], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mergeInto(t, splitSource(t, 1), name, true, splitOpts...); !errors.Is(err, archive.ErrExists) {
		t.Fatalf("a second Create over the set: %v; want ErrExists", err)
	}
	if err := mergeInto(t, splitSource(t, 1), filepath.Join(dir, "other.tar.zst"), false, splitOpts...); err != nil {
		t.Fatal(err)
	}
	wtNoLeftovers(t, dir, append(baseNames(before), "plain.tar")...)

	if err := mergeInto(t, splitSource(t, 1), name, true, append(splitOpts, archive.WithOverwrite(true))...); err != nil {
		t.Fatal(err)
	}
	after := parts(t, name)
	if len(after) >= len(before) {
		t.Fatalf("parts %q after replacing %q with one image; want fewer", after, before)
	}
	if st, err := os.Stat(after[0]); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("the replacing first part is %v; want the replaced one's mode, -rw-------", st.Mode())
	}
	wtNoLeftovers(t, dir, append(baseNames(after), "plain.tar")...)
	if imgs := wtReadBack(t, name); len(imgs) != 1 {
		t.Errorf("the replaced set reads back %d images, want 1", len(imgs))
	}
}

// WithSplit is refused where it cannot apply.
func TestSplitOptionErrors(t *testing.T) {
	dir := t.TempDir()
	zstdOpt := archive.WithCompression(archive.CompressZstd, 0)
	for _, tc := range []struct {
		name string
		path string
		opts []archive.CreateOption
		want string
	}{
		{"no compression", "a.tar", []archive.CreateOption{archive.WithSplit(archive.MinSplitSize)}, `needs "zstd"`},
		{"gzip", "a.tar.gz", []archive.CreateOption{archive.WithCompression(archive.CompressGzip, 0), archive.WithSplit(archive.MinSplitSize)}, `needs "zstd"`},
		{"too small", "a.tar.zst", []archive.CreateOption{zstdOpt, archive.WithSplit(1 << 20)}, "less than the minimum"},
		{"standard output", "-", []archive.CreateOption{zstdOpt, archive.WithSplit(archive.MinSplitSize)}, "only to Create with a path"},
	} {
		path := tc.path
		if path != "-" {
			path = filepath.Join(dir, path)
		}
		w, err := archive.Create(path, tc.opts...)
		if err == nil {
			w.Close()
			t.Errorf("%s: accepted", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	if _, err := archive.NewWriter(io.Discard, zstdOpt, archive.WithSplit(archive.MinSplitSize)); err == nil {
		t.Error("NewWriter with WithSplit: accepted")
	}
	wtNoLeftovers(t, dir)
}

// TestSplitDockerLoad: the parts, concatenated and decompressed by the zstd CLI, are what
// docker 20.10 loads through a pipe: `cat OUT.0* | zstd -dc | docker load`.
func TestSplitDockerLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd")
	}
	zstdCLI := testtools.Require(t, "zstd")
	plain, _, got := writeSplit(t, t.TempDir(), 3)
	d := testtools.StartDockerd(t)
	script := `zstd=$1 host=$2; shift 2; cat "$@" | "$zstd" -dc | /usr/bin/docker -H "$host" load -q`
	pipe := exec.Command("sh", append([]string{"-c", script, "sh", zstdCLI, d.Host}, got...)...)
	if out, err := pipe.CombinedOutput(); err != nil {
		t.Fatalf("cat parts | zstd -dc | docker load: %v\n%s", err, out)
	}
	checkDockerImages(t, d, wtReadBack(t, plain))
}

// TestServeSplitChanged: a split set is served in place from its parts; once one part
// changes (here the last, appended to), its blobs and manifests are answered 500 and the
// log names the part.
func TestServeSplitChanged(t *testing.T) {
	_, _, got := writeSplit(t, t.TempDir(), 3)
	a := openServed(t, got[0])
	h, serveLog := loggedHandler(t, a)
	d, err := a.Inspect(tagSelector(t, "example.com/split/img:a"))
	if err != nil {
		t.Fatal(err)
	}
	blob := "/v2/split/img/blobs/" + d.Layers[0].Digest.String()
	if r := serveReq(t, h, "GET", blob, nil); r.status != 200 || int64(len(r.body)) != d.Layers[0].Size {
		t.Fatalf("before the change: %d, %d bytes", r.status, len(r.body))
	}
	last := got[len(got)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte("more"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{blob, "/v2/split/img/manifests/a"} {
		if r := serveReq(t, h, "GET", p, nil); r.status != 500 {
			t.Errorf("GET %s after the change: %d, want 500", p, r.status)
		}
	}
	logged := serveLog.get()
	if len(logged) == 0 || !strings.Contains(logged[0], filepath.Base(last)) || !strings.Contains(logged[0], "changed since it was opened") {
		t.Errorf("logged %q, want the change of %s", logged, last)
	}
}
