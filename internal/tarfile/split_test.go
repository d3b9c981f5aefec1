package tarfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/archivetest"
)

// splitFixture is a tar of four images with 2 MiB random layers, so that parts of 3 MiB cut
// it into several.
func splitFixture(t *testing.T) []byte {
	t.Helper()
	var images []archivetest.Image
	for i, tag := range []string{"a:1", "b:1", "c:1", "d:1"} {
		images = append(images, archivetest.Image{Tags: []string{tag}, Layers: [][]byte{archivetest.Layer(int64(i+1), 2, 1<<20)}})
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeParts writes the parts in dir as NAME.000, NAME.001, … and returns NAME.
func writeParts(t *testing.T, dir string, parts [][]byte) string {
	t.Helper()
	name := filepath.Join(dir, "bundle.tar.zst")
	for i, p := range parts {
		if err := os.WriteFile(PartName(name, i), p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// splitBundle compresses data into a seekable bundle cut into parts of partSize bytes.
func splitBundle(t *testing.T, data []byte, partSize int64) [][]byte {
	t.Helper()
	bufs := []*bytes.Buffer{{}}
	next := func() (io.Writer, error) {
		bufs = append(bufs, &bytes.Buffer{})
		return bufs[len(bufs)-1], nil
	}
	cw, err := NewCompressor(bufs[0], Zstd, CompressOptions{PartSize: partSize, NextPart: next})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	parts := make([][]byte, len(bufs))
	for i, b := range bufs {
		parts[i] = b.Bytes()
	}
	return parts
}

// listing is what a reader reports of its images: tags and IDs.
func listing(r *Reader) []string {
	var out []string
	for _, img := range r.Images() {
		out = append(out, fmt.Sprint(img.Tags)+"="+string(img.ID))
	}
	return out
}

// A split bundle, given its first part, its name or a pattern, opens in place (no spool) to
// the same images as the tar it was cut from, and every image reads back against its digests.
func TestOpenSplitBundle(t *testing.T) {
	data := splitFixture(t)
	plain, err := newReader("plain", bytes.NewReader(data), int64(len(data)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	parts := splitBundle(t, data, 3<<20)
	if len(parts) < 3 {
		t.Fatalf("%d parts of a %d-byte tar; want at least 3", len(parts), len(data))
	}
	for i, p := range parts {
		if len(p) > 3<<20 {
			t.Errorf("part %d: %d bytes, more than the part size", i, len(p))
		}
	}
	if got := zstdDecode(t, bytes.Join(parts, nil)); !bytes.Equal(got, data) {
		t.Fatal("the concatenated parts do not decode to the tar")
	}
	name := writeParts(t, t.TempDir(), parts)
	for _, path := range []string{PartName(name, 0), name, name + ".*"} {
		if spool, err := NeedsSpool(path); err != nil || spool {
			t.Errorf("NeedsSpool(%s) = %v, %v; want false", path, spool, err)
		}
		spoolDir := t.TempDir()
		r, err := OpenFile(path, OpenOptions{TempDir: spoolDir, Warn: func(s string) { t.Errorf("warning: %s", s) }})
		if err != nil {
			t.Fatalf("OpenFile(%s): %v", path, err)
		}
		if got, want := listing(r), listing(plain); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("OpenFile(%s) lists %v, want %v", path, got, want)
		}
		if r.view == nil {
			t.Errorf("OpenFile(%s): not indexed from the header view in the last part", path)
		}
		for _, img := range r.Images() {
			if errs := readImage(img); len(errs) > 0 {
				t.Errorf("OpenFile(%s): image %v: %v", path, img.Tags, errs)
			}
		}
		if err := r.StoredIndexMismatch(); err != nil {
			t.Error(err)
		}
		r.Close()
		if ents, _ := os.ReadDir(spoolDir); len(ents) > 0 {
			t.Errorf("OpenFile(%s) left temp files", path)
		}
	}
}

// Parts cut anywhere (as `split -d -a 3 -b` cuts) are read as their concatenation: a plain
// tar in place, a zstd stream without seek tables spooled once.
func TestOpenSplitAnywhere(t *testing.T) {
	data := splitFixture(t)
	cut := func(b []byte) [][]byte { return [][]byte{b[:1000], b[1000 : len(b)/2], b[len(b)/2:]} }
	for _, tc := range []struct {
		name  string
		bytes []byte
		spool bool
	}{
		{"plain tar", data, false},
		{"plain zstd", plainZstd(t, data), true},
	} {
		name := writeParts(t, t.TempDir(), cut(tc.bytes))
		if spool, err := NeedsSpool(name); err != nil || spool != tc.spool {
			t.Errorf("%s: NeedsSpool = %v, %v; want %v", tc.name, spool, err, tc.spool)
		}
		r, err := OpenFile(PartName(name, 0), OpenOptions{TempDir: t.TempDir()})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(r.Images()) != 4 {
			t.Errorf("%s: %d images, want 4", tc.name, len(r.Images()))
		}
		for _, img := range r.Images() {
			if errs := readImage(img); len(errs) > 0 {
				t.Errorf("%s: image %v: %v", tc.name, img.Tags, errs)
			}
		}
		r.Close()
	}
}

// Which paths name a split archive, and the mistakes that are errors rather than a wrong
// archive.
func TestSplitParts(t *testing.T) {
	dir := t.TempDir()
	touch := func(names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	touch("b.000", "b.001", "b.002", "lone.000", "gap.000", "gap.002", "plain.tar", "x.000", "x.001", "xy.000")
	p := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(dir, n))
		}
		return out
	}
	for _, tc := range []struct {
		arg     string
		want    []string
		wantErr string
	}{
		{"b.000", p("b.000", "b.001", "b.002"), ""},
		{"b", p("b.000", "b.001", "b.002"), ""},
		{"b.*", p("b.000", "b.001", "b.002"), ""},
		{"b.00[0-9]", p("b.000", "b.001", "b.002"), ""},
		{"b.001", nil, "give its first part"},
		{"lone.000", nil, ""},
		{"lone", p("lone.000"), ""},
		{"plain.tar", nil, ""},
		{"missing.tar", nil, ""},
		{"gap.000", nil, "gap.001 is missing, but"},
		{"gap", nil, "gap.001 is missing, but"},
		{"gap.*", nil, "not the parts of one split archive"},
		{"x*", nil, "not the parts of one split archive"},
		{"*.tar", nil, "not the first part"},
	} {
		got, err := SplitParts(filepath.Join(dir, tc.arg))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, %v; want an error containing %q", tc.arg, got, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.arg, err)
		case strings.Join(got, " ") != strings.Join(tc.want, " "):
			t.Errorf("%s: %v; want %v", tc.arg, got, tc.want)
		}
	}
}

// A set with its last part missing is an error, never a shorter archive.
func TestOpenSplitMissingPart(t *testing.T) {
	parts := splitBundle(t, splitFixture(t), 3<<20)
	name := writeParts(t, t.TempDir(), parts[:len(parts)-1])
	r, err := OpenFile(name, OpenOptions{TempDir: t.TempDir()})
	if err == nil {
		r.Close()
		t.Fatal("a split bundle without its last part opened")
	}
	if !strings.Contains(err.Error(), "is one missing?") {
		t.Errorf("error %q does not suggest a missing part", err)
	}
}
