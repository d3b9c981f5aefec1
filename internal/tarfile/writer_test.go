package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// TestHeaderMatchesArchiveTar: our USTAR header is byte-for-byte what archive/tar writes for
// the same fields, and archive/tar reads back what we wrote, including base-256 sizes.
func TestHeaderMatchesArchiveTar(t *testing.T) {
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name     string
		typ      byte
		size     int64
		linkname string
		mtime    time.Time
	}{
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.tar", tar.TypeReg, 4608, "", time.Unix(0, 0)},
		{"blobs/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", tar.TypeReg, 0, "", mtime},
		{"abc/layer.tar", tar.TypeSymlink, 0, "../0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.tar", time.Unix(0, 0)},
		// The largest size USTAR octal holds.
		{"big", tar.TypeReg, 1<<33 - 1, "", time.Unix(0, 0)},
		// Above it: base-256, which archive/tar writes only in the GNU format.
		{"huge", tar.TypeReg, 10 << 30, "", time.Unix(0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := header(tc.name, tc.typ, tc.size, tc.linkname, tc.mtime.Unix())
			if err != nil {
				t.Fatal(err)
			}
			mode := int64(fileMode)
			if tc.typ == tar.TypeSymlink {
				mode = symlinkMode
			}
			format := tar.FormatUSTAR
			if tc.size > maxOctal11 {
				format = tar.FormatGNU
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			want := &tar.Header{Name: tc.name, Typeflag: tc.typ, Size: tc.size, Linkname: tc.linkname, Mode: mode, ModTime: tc.mtime, Format: format}
			if err := tw.WriteHeader(want); err != nil {
				t.Fatal(err)
			}
			if format == tar.FormatUSTAR && !bytes.Equal(got, buf.Bytes()[:blockSize]) {
				t.Errorf("header differs from archive/tar's\n got %q\nwant %q", got, buf.Bytes()[:blockSize])
			}
			h, err := tar.NewReader(bytes.NewReader(got)).Next()
			if err != nil {
				t.Fatalf("archive/tar cannot read the header: %v", err)
			}
			if h.Name != tc.name || h.Size != tc.size || h.Typeflag != tc.typ || h.Linkname != tc.linkname ||
				h.Mode != mode || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(tc.mtime) {
				t.Errorf("read back %+v", h)
			}
		})
	}
	for _, bad := range []string{"", strings.Repeat("x", 101), "a\x00b"} {
		if _, err := header(bad, tar.TypeReg, 0, "", 0); err == nil {
			t.Errorf("header(%q) succeeded", bad)
		}
	}
}

// seekableFile returns an empty temp file.
func seekableFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out.tar"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func layerName(d digest.Digest) string { return d.Encoded() + ".tar" }

// TestStreamBlob streams blobs with and without their size and digest, to a file and to a
// stream, and checks what ends up in the tar and what errors are returned.
func TestStreamBlob(t *testing.T) {
	data := bytes.Repeat([]byte("darc "), 1000) // 5000 bytes: not a multiple of 512
	d := digest.FromBytes(data)
	errRead := errors.New("read failed")
	tests := []struct {
		name     string
		seekable bool
		src      io.Reader
		size     int64
		want     digest.Digest
		wantErr  error
		sticky   bool // the error stays (a stream cannot be cut back)
	}{
		{"file, size and digest known", true, bytes.NewReader(data), 5000, d, nil, false},
		// copy.Image's decompressed layers: the header is patched.
		{"file, size and digest unknown", true, bytes.NewReader(data), -1, "", nil, false},
		{"file, digest unknown", true, bytes.NewReader(data), 5000, "", nil, false},
		{"file, size unknown", true, bytes.NewReader(data), -1, d, nil, false},
		{"stream, size and digest known", false, bytes.NewReader(data), 5000, d, nil, false},
		{"file, wrong digest", true, bytes.NewReader(data), -1, digest.FromString("other"), ErrDigestMismatch, false},
		{"file, shorter than declared", true, bytes.NewReader(data), 6000, "", ErrSizeMismatch, false},
		{"file, longer than declared", true, bytes.NewReader(data), 4000, "", ErrSizeMismatch, false},
		{"file, read error", true, iotest.TimeoutReader(bytes.NewReader(data)), -1, "", iotest.ErrTimeout, false},
		{"file, read error at once", true, iotest.ErrReader(errRead), -1, "", errRead, false},
		{"stream, wrong digest", false, bytes.NewReader(data), 5000, digest.FromString("other"), ErrDigestMismatch, true},
		{"stream, read error", false, io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(errRead)), 5000, d, errRead, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out io.Writer = &bytes.Buffer{}
			var f *os.File
			if tc.seekable {
				f = seekableFile(t)
				out = f
			}
			w, err := NewWriter(out, WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteFile("before.json", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			before := w.Offset()
			m, err := w.StreamBlob(tc.src, tc.size, tc.want, layerName)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if got := w.Err() != nil; got != tc.sticky {
				t.Errorf("sticky error %v, want sticky %v", w.Err(), tc.sticky)
			}
			if tc.sticky {
				if _, err := w.WriteFile("after.json", []byte("{}")); err == nil {
					t.Error("write after a sticky error succeeded")
				}
				return
			}
			if err != nil {
				if w.Offset() != before {
					t.Errorf("after the error the writer is at %d, want %d (cut back)", w.Offset(), before)
				}
				if st, _ := f.Stat(); st.Size() != before {
					t.Errorf("after the error the file holds %d bytes, want %d", st.Size(), before)
				}
			} else if m.Name != layerName(d) || m.Digest != d || m.Size != 5000 || m.HeaderOffset != before {
				t.Errorf("got member %+v", m)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			var tarBytes []byte
			if f != nil {
				tarBytes, _ = os.ReadFile(f.Name())
			} else {
				tarBytes = out.(*bytes.Buffer).Bytes()
			}
			wantNames := []string{"before.json"}
			if tc.wantErr == nil {
				wantNames = append(wantNames, layerName(d))
			}
			checkTar(t, tarBytes, wantNames, map[string][]byte{layerName(d): data})
		})
	}
	t.Run("stream, size unknown", func(t *testing.T) {
		w, _ := NewWriter(&bytes.Buffer{}, WriterOptions{})
		if _, err := w.StreamBlob(bytes.NewReader(data), -1, d, layerName); err == nil {
			t.Fatal("streaming a blob of unknown size to a stream succeeded")
		}
		if w.Err() != nil || w.Offset() != 0 {
			t.Errorf("the refusal wrote something: offset %d, err %v", w.Offset(), w.Err())
		}
	})
}

// checkTar reads data with archive/tar and with BuildIndex and checks the member names, in
// order, and the content of the members in want.
func checkTar(t *testing.T, data []byte, names []string, want map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		got = append(got, h.Name)
		if w, ok := want[h.Name]; ok {
			b, _ := io.ReadAll(tr)
			if !bytes.Equal(b, w) {
				t.Errorf("member %q: %d bytes differ from the %d written", h.Name, len(b), len(w))
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("members %q, want %q", got, names)
	}
	ix, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatalf("BuildIndex: %v", err)
	}
	if len(ix.Members()) != len(names) {
		t.Errorf("BuildIndex found %d members, want %d", len(ix.Members()), len(names))
	}
	if len(data)%blockSize != 0 || !bytes.Equal(data[len(data)-2*blockSize:], make([]byte, 2*blockSize)) {
		t.Error("the tar does not end with two zero blocks")
	}
}

// TestSpoolBlob spools, checks and writes back; a spool leaves no file in its directory.
func TestSpoolBlob(t *testing.T) {
	data := []byte("spooled layer content")
	d := digest.FromBytes(data)
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int64
		want    digest.Digest
		wantErr error
	}{
		{"unknown size and digest", -1, "", nil},
		{"known", int64(len(data)), d, nil},
		{"wrong digest", -1, digest.FromString("x"), ErrDigestMismatch},
		{"wrong size", 3, "", ErrSizeMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := SpoolBlob(bytes.NewReader(data), tc.size, tc.want, dir)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool left %d files in its directory", len(ents))
			}
			if err != nil {
				return
			}
			defer sp.Close()
			if sp.Digest() != d || sp.Size() != int64(len(data)) {
				t.Errorf("spooled %s %d, want %s %d", sp.Digest(), sp.Size(), d, len(data))
			}
			var buf bytes.Buffer
			w, _ := NewWriter(&buf, WriterOptions{})
			if _, err := w.WriteSpooled(layerName(d), sp); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkTar(t, buf.Bytes(), []string{layerName(d)}, map[string][]byte{layerName(d): data})
			if err := sp.Close(); err != nil {
				t.Error(err)
			}
			if err := sp.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestSpoolBlobChanged: a spool file that changed between spooling and writing out is a
// digest mismatch, and the member is not written (cut back off a seekable output).
func TestSpoolBlobChanged(t *testing.T) {
	data := bytes.Repeat([]byte("spooled layer content "), 1000)
	sp, err := SpoolBlob(bytes.NewReader(data), -1, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := sp.f.WriteAt([]byte{'X'}, 100); err != nil {
		t.Fatal(err)
	}
	w, _ := NewWriter(seekableFile(t), WriterOptions{})
	if _, err := w.WriteSpooled(layerName(sp.Digest()), sp); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("changed spool file: %v, want ErrDigestMismatch", err)
	}
	if w.Offset() != 0 {
		t.Errorf("%d bytes left in the output", w.Offset())
	}
}

// TestCutBack removes members off the end of a file; on a stream it is refused and sticky.
func TestCutBack(t *testing.T) {
	f := seekableFile(t)
	w, _ := NewWriter(f, WriterOptions{})
	a, _ := w.WriteFile("a", []byte("aaa"))
	b, _ := w.WriteSymlink("b", "a")
	if _, err := w.WriteFile("c", bytes.Repeat([]byte("c"), 2000)); err != nil {
		t.Fatal(err)
	}
	if err := w.CutBack(b.HeaderOffset); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFile("d", []byte("d")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f.Name())
	checkTar(t, data, []string{"a", "d"}, map[string][]byte{"a": []byte("aaa"), "d": []byte("d")})
	if a.HeaderOffset != 0 || w.CutBack(-1) == nil || w.CutBack(w.Offset()+1) == nil {
		t.Error("CutBack accepted an offset outside the archive")
	}

	s, _ := NewWriter(&bytes.Buffer{}, WriterOptions{})
	if err := s.CutBack(0); err == nil || s.Err() == nil {
		t.Errorf("CutBack on a stream: %v, sticky %v", err, s.Err())
	}
}

// TestWriterModTime rejects times a header cannot hold and writes the one given.
func TestWriterModTime(t *testing.T) {
	if _, err := NewWriter(io.Discard, WriterOptions{ModTime: time.Unix(-1, 0)}); err == nil {
		t.Error("a time before 1970 was accepted")
	}
	var buf bytes.Buffer
	when := time.Unix(1700000000, 0)
	w, err := NewWriter(&buf, WriterOptions{ModTime: when})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFile("x", nil); err != nil {
		t.Fatal(err)
	}
	h, err := tar.NewReader(&buf).Next()
	if err != nil || !h.ModTime.Equal(when) {
		t.Errorf("mtime %v (%v), want %v", h.ModTime, err, when)
	}
}
