package tarfile

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/zstdseek"
)

// compressTo writes data through NewCompressor(c) into a file and returns its path.
func compressTo(t *testing.T, data []byte, c Compression) string {
	t.Helper()
	var buf bytes.Buffer
	cw, err := NewCompressor(&buf, c, CompressOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes: the bundle writer must follow headers split across writes.
	for p := data; len(p) > 0; {
		k := min(len(p), 777)
		if _, err := cw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// zstdDecode decodes a whole zstd stream, as any zstd reader of the file would.
func zstdDecode(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBundleRoundTrip: every seed archive (real tools' fixtures, every layout, the hostile
// edge cases) written as a seekable bundle decodes to the same tar with any zstd decoder, and
// opens in place to the same images as the plain tar, indexed from the stored header view.
func TestBundleRoundTrip(t *testing.T) {
	for i, data := range seedArchives(t, false) {
		if DetectCompression(data) != Uncompressed {
			continue
		}
		want, err := openRandom(t, data)
		if err != nil {
			continue // not an archive: nothing to compare with
		}
		path := compressTo(t, data, Zstd)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := zstdDecode(t, raw); !bytes.Equal(got, data) {
			t.Fatalf("seed %d: zstd decodes to %d bytes, want the %d of the tar", i, len(got), len(data))
		}
		got, err := OpenFile(path, OpenOptions{TempDir: t.TempDir()})
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if got.view == nil {
			t.Errorf("seed %d: indexed without the stored header view", i)
		}
		if got.trail != nil {
			t.Errorf("seed %d: spooled, not read in place", i)
		}
		compareReaders(t, got, want)
		if err := got.StoredIndexMismatch(); err != nil {
			t.Errorf("seed %d: %v", i, err)
		}
		got.Close()
		want.Close()
	}
}

// TestBundleReproducible: the same tar gives the same bytes, and members of 256 KiB and more
// start frames of their own, the first one short.
func TestBundleReproducible(t *testing.T) {
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big[:1<<20]) // some of it incompressible
	var tarBuf bytes.Buffer
	tw, err := NewWriter(&tarBuf, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name string
		data []byte
	}{{"small.json", []byte(`{}`)}, {"big.tar", big}, {"after.json", []byte(`[]`)}} {
		if _, err := tw.WriteFile(m.name, m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(compressTo(t, tarBuf.Bytes(), Zstd))
	b, _ := os.ReadFile(compressTo(t, tarBuf.Bytes(), Zstd))
	if !bytes.Equal(a, b) {
		t.Fatal("two bundles of one tar differ")
	}
	zr, err := zstdseek.Open(bytes.NewReader(a), int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	// small.json; big.tar's header and first 64 KiB, then the rest of it (less than 4 MiB);
	// after.json and the end; the view.
	if got := zr.Frames(); got != 5 {
		t.Errorf("%d frames, want 5: the big member's two, the members before and after it, the header view", got)
	}
}

// TestBundleViewDisagrees: a header view that does not describe the tar in the frames (here
// one member renamed, its checksum fixed) is what Open trusts, and what StoredIndexMismatch
// reports.
func TestBundleViewDisagrees(t *testing.T) {
	data, err := os.ReadFile("../../testdata/archives/podman-save-m.tar")
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("repositories\x00"))
	if at < 0 || at%blockSize != 0 {
		t.Fatal("no repositories member header in the fixture")
	}
	lie := bytes.Clone(data)
	lie[at+len("repositorie")] = 'Z'
	copy(lie[at+148:at+156], "        ")
	var sum int64
	for _, c := range lie[at : at+blockSize] {
		sum += int64(c)
	}
	copy(lie[at+148:at+156], fmt.Sprintf("%06o\x00 ", sum))
	// The lying tar's view, as a bundle of it would have.
	discard, err := zstdseek.NewWriter(io.Discard, zstdseek.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	follow := &bundleWriter{zw: discard}
	if _, err := follow.Write(lie); err != nil || !follow.ended || follow.lost {
		t.Fatalf("following the tar: %v, ended %v, lost %v", err, follow.ended, follow.lost)
	}
	follow.view.size = int64(len(lie))
	payload, err := follow.view.encode()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw, err := zstdseek.NewWriter(&out, zstdseek.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = zw.Write(data)
	if err := zw.WriteSkippable(payload); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lie.tar.zst")
	_ = os.WriteFile(path, out.Bytes(), 0o644)
	r, err := OpenFile(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.view == nil || !hasMember(r.Index(), "repositorieZ") {
		t.Fatal("the stored view was not used")
	}
	err = r.StoredIndexMismatch()
	if want := fmt.Sprintf("disagrees with the tar at bytes %d to %d", at, at+blockSize); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("StoredIndexMismatch = %v, want it to say %q", err, want)
	}
}

// TestBundleDamagedSeekTable: a bundle whose seek table is damaged is read as a plain zstd
// stream, after a warning, and gives the same images; one without a seek table (plain zstd)
// is read as a stream without a warning.
func TestBundleDamagedSeekTable(t *testing.T) {
	data := seedArchives(t, false)[0]
	want, err := openRandom(t, data)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	raw, _ := os.ReadFile(compressTo(t, data, Zstd))
	n := binary.LittleEndian.Uint32(raw[len(raw)-9:])
	damaged := bytes.Clone(raw)
	// The first entry's compressed size, one larger: the sizes no longer add up.
	entry := len(raw) - 9 - int(n)*8
	binary.LittleEndian.PutUint32(damaged[entry:], binary.LittleEndian.Uint32(damaged[entry:])+1)
	plain := plainZstd(t, data)
	for _, tc := range []struct {
		name string
		data []byte
		warn bool
	}{
		{"damaged table", damaged, true},
		{"plain zstd", plain, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.tar.zst")
			_ = os.WriteFile(path, tc.data, 0o644)
			var warnings []string
			got, err := OpenFile(path, OpenOptions{TempDir: t.TempDir(), Warn: func(s string) { warnings = append(warnings, s) }})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.trail == nil {
				t.Error("read in place, want spooled as a stream")
			}
			if (len(warnings) > 0) != tc.warn {
				t.Errorf("warnings %q, want some: %v", warnings, tc.warn)
			}
			compareReaders(t, got, want)
		})
	}
}

// plainZstd compresses data as one plain zstd stream, without a seek table.
func plainZstd(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// TestGzipBundle: gzip output decodes to the tar and is the same whatever the core count.
func TestGzipBundle(t *testing.T) {
	data := seedArchives(t, false)[0]
	raw, _ := os.ReadFile(compressTo(t, data, Gzip))
	zr, err := pgzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("gzip decodes to %d bytes (%v), want the %d of the tar", len(got), err, len(data))
	}
	again, _ := os.ReadFile(compressTo(t, data, Gzip))
	if !bytes.Equal(raw, again) {
		t.Error("two gzip outputs of one tar differ")
	}
}

// FuzzHeaderView: decodeHeaderView never panics, and a view it accepts reads within bounds.
func FuzzHeaderView(f *testing.F) {
	var v headerView
	v.add(0, make([]byte, 512))
	v.add(4096, []byte("end"))
	v.size = 5000
	if p, err := v.encode(); err == nil {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		v, err := decodeHeaderView(payload)
		if err != nil {
			return
		}
		buf := make([]byte, 1024)
		for off := int64(0); off < v.size && off < 1<<20; off += 1000 {
			n, err := v.ReadAt(buf, off)
			if n < len(buf) && err == nil {
				t.Fatalf("short read of %d at %d without an error", n, off)
			}
		}
	})
}

func hasMember(ix *Index, name string) bool {
	_, ok := ix.Lookup(name)
	return ok
}

// TestBundleReadsOnlyWhatItNeeds: opening a bundle and listing its images (what ls does)
// reads the seek table, the header view and the frames of the small members, not the layers;
// reading one image reads that image's frames, not the other's.
func TestBundleReadsOnlyWhatItNeeds(t *testing.T) {
	images := []archivetest.Image{
		{Tags: []string{"a:1"}, Layers: [][]byte{archivetest.Layer(1, 4, 512<<10)}},
		{Tags: []string{"b:1"}, Layers: [][]byte{archivetest.Layer(2, 4, 512<<10)}},
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(compressTo(t, data, Zstd))
	file := &countingReaderAt{r: bytes.NewReader(raw)}
	size := int64(len(raw))
	r, err := bundleReader("test", file, []int64{size}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Images()) != 2 || r.Images()[1].ID == "" {
		t.Fatalf("images %+v", r.Images())
	}
	// The layers are random: they take nearly all of the file.
	if got := file.bytesIn(0, size); got > size/20 {
		t.Errorf("opening and listing read %d of the %d bytes", got, size)
	}
	file.reset()
	if errs := readImage(r.Images()[1]); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := file.bytesIn(0, size); got > size*6/10 || got < size*4/10 {
		t.Errorf("reading image @1 read %d of the %d bytes, want about half", got, size)
	}
}
