package archive_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/tarfile"
)

// The large hostile inputs run one per child process (this test binary, re-executed), so that
// the peak resident memory each one costs can be read from the child's /proc/self/status
// (VmHWM) and logged; a child that starts and opens nothing gives the baseline. The parent
// writes the inputs, streaming, so the child only reads.

// largeCase is one large input.
type largeCase struct {
	name string
	// make writes the input to path.
	make func(t *testing.T, path string)
	opts []archive.OpenOption
	// wantErr is what open or verify must report; nil: the archive must open and verify.
	wantErr error
	// maxRSS, if set, bounds the child's peak RSS in MiB: for inputs whose cost must not
	// grow with their size.
	maxRSS int64
}

const (
	millionMembers = 1_000_000
	hugeManifest   = 100 << 20
	bombSize       = 100 << 20 // zeros, compressed
	bombLimit      = 10 << 20  // WithMaxSpoolSize
)

func largeCases() []largeCase {
	return []largeCase{
		{name: "baseline: open an empty file", make: func(t *testing.T, p string) { writeFile(t, p, nil) }, wantErr: archive.ErrNotDockerArchive},
		{name: "1,000,000 members, default limit", make: writeManyMembers},
		{name: "1,000,000 members, limit 500,000", make: writeManyMembers, opts: []archive.OpenOption{archive.WithMaxMembers(500_000)}, wantErr: archive.ErrTooLarge},
		{name: "100 MB manifest.json", make: writeHugeManifest, wantErr: archive.ErrTooLarge, maxRSS: 64},
		{name: "gzip bomb 100 MB, spool limit 10 MB", make: writeBomb("gzip"), opts: []archive.OpenOption{archive.WithMaxSpoolSize(bombLimit)}, wantErr: archive.ErrTooLarge, maxRSS: 128},
		{name: "zstd bomb 100 MB, spool limit 10 MB", make: writeBomb("zstd"), opts: []archive.OpenOption{archive.WithMaxSpoolSize(bombLimit)}, wantErr: archive.ErrTooLarge, maxRSS: 128},
		{name: "xz bomb 100 MB, spool limit 10 MB", make: writeBomb("xz"), opts: []archive.OpenOption{archive.WithMaxSpoolSize(bombLimit)}, wantErr: archive.ErrTooLarge, maxRSS: 128},
		{name: "zstd frame header asking for a 256 MiB window", make: writeZstdWindow(28), wantErr: archive.ErrNotDockerArchive, maxRSS: 64},
		{name: "zstd frame header asking for a 2 GiB window", make: writeZstdWindow(31), wantErr: archive.ErrNotDockerArchive, maxRSS: 64},
		{name: "xz block header asking for a 4 GiB dictionary", make: writeXzDict, wantErr: io.ErrUnexpectedEOF},
		{name: "legacy: 600 images on a 600-deep v1 chain", make: func(t *testing.T, p string) { writeFile(t, p, legacyFan(600, 600)) }, wantErr: archive.ErrTooLarge},
		{name: "manifest.json of 60 MB naming one layer 15,000,000 times", make: writeDenseManifest, wantErr: archive.ErrTooLarge, maxRSS: 256},
		{name: "manifest.json naming one layer 2,000,000 times (under the bounds)", make: writeDenseManifestN(2_000_000), wantErr: archive.ErrInvalidManifest},
		{name: "manifest.json giving one image 1,000,000 tags", make: writeManyTags, wantErr: nil},
		{name: "OCI index fan-out 100^4", make: func(t *testing.T, p string) { writeFile(t, p, ociFanOut(100, 3)) }},
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeManyMembers writes an archive of exactly 1,000,000 members: one image (layer, config)
// and manifest.json last, after 999,997 empty files.
func writeManyMembers(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	hp := newHostileParts()
	put := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(body)), Mode: 0o444, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	put(hp.layerName, hp.layer)
	for i := 0; i < millionMembers-3; i++ {
		put(fmt.Sprintf("f/%07d", i), nil)
	}
	put(hp.cfgName, hp.config)
	put("manifest.json", manifestEntry(hp.cfgName, hp.layerName).Body)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// writeHugeManifest writes a valid image whose manifest.json member is 100 MB of spaces
// after the JSON (a file hole: nothing is written, and a reader that reads it all sees zeros).
func writeHugeManifest(t *testing.T, p string) {
	t.Helper()
	hp := newHostileParts()
	members := archivetest.Tar([]archivetest.Entry{hp.layerEntry(), hp.configEntry()})
	members = members[:len(members)-1024]
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: hugeManifest, Mode: 0o444, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	data := append(members, hdr.Bytes()...)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(data)) + hugeManifest + 1024); err != nil {
		t.Fatal(err)
	}
}

// writeDenseManifest writes a valid image whose manifest.json (60 MB, under the default
// limit) names its layer 15,000,000 times: the densest manifest.json the limit admits.
func writeDenseManifest(t *testing.T, p string) { writeDenseManifestN(15_000_000)(t, p) }

// writeDenseManifestN writes an image whose manifest.json names its layer n times.
func writeDenseManifestN(n int) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		t.Helper()
		hp := newHostileParts()
		writeFile(t, p, archivetest.Tar([]archivetest.Entry{hp.configEntry(), {Name: "l", Body: hp.layer},
			{Name: "manifest.json", Body: manifestJSONLayers(hp.cfgName, "l", n)}}))
	}
}

// writeManyTags writes a valid image with 1,000,000 distinct tags.
func writeManyTags(t *testing.T, p string) {
	t.Helper()
	hp := newHostileParts()
	tags := make([]string, 1_000_000)
	for i := range tags {
		tags[i] = fmt.Sprintf("example.com/t:%d", i)
	}
	m := archivetest.ManifestJSON([]archivetest.ManifestItem{{Config: hp.cfgName, RepoTags: tags, Layers: []string{hp.layerName}}})
	writeFile(t, p, archivetest.Tar([]archivetest.Entry{hp.layerEntry(), hp.configEntry(), {Name: "manifest.json", Body: m}}))
}

// writeBomb compresses 100 MB of zeros (not even a tar: the limit must strike first).
func writeBomb(format string) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		t.Helper()
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var w io.WriteCloser
		switch format {
		case "gzip":
			w = gzip.NewWriter(f)
		case "zstd":
			if w, err = zstd.NewWriter(f); err != nil {
				t.Fatal(err)
			}
		case "xz":
			if w, err = xz.NewWriter(f); err != nil {
				t.Fatal(err)
			}
		}
		// One tar member of zeros: zeros alone would be the end-of-archive blocks, after
		// which nothing is spooled.
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: bombSize}); err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 1<<20)
		for i := 0; i < bombSize>>20; i++ {
			if _, err := tw.Write(zeros); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// writeZstdWindow writes a zstd frame whose header asks for a 2^log window, holding one raw
// block of five bytes.
func writeZstdWindow(log byte) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		t.Helper()
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3}
		bh := uint32(5<<3 | 1) // last block, raw, 5 bytes
		frame = append(frame, byte(bh), byte(bh>>8), byte(bh>>16))
		writeFile(t, p, append(frame, "hello"...))
	}
}

// writeXzDict writes a small xz stream whose block header asks for the largest LZMA2
// dictionary (4 GiB - 1), its header checksum fixed up.
func writeXzDict(t *testing.T, p string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello hello hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	size := int(b[12]+1) * 4 // the block header follows the 12-byte stream header
	hdr := b[12 : 12+size]
	i := bytes.Index(hdr[2:], []byte{0x21, 0x01}) + 2 // LZMA2 filter, one property byte
	if i < 2 {
		t.Fatalf("no LZMA2 filter in block header % x", hdr)
	}
	hdr[i+2] = 40 // dictionary 4 GiB - 1
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))
	writeFile(t, p, b)
}

// TestLargeInputs runs each large case in a child process and logs its time, peak RSS and
// input size; the figures go into the README's robustness table.
func TestLargeInputs(t *testing.T) {
	if os.Getenv("DARC_LARGE_CASE") != "" {
		t.Skip("in a child process")
	}
	if raceEnabled {
		// Each case is one goroutine reading one archive: the race detector has nothing to
		// find in them and makes them ten times slower. The plain test run covers them.
		t.Skip("large single-threaded cases run without the race detector")
	}
	dir := t.TempDir()
	for i, c := range largeCases() {
		t.Run(c.name, func(t *testing.T) {
			input := filepath.Join(dir, fmt.Sprintf("input-%d", i))
			start := time.Now()
			c.make(t, input)
			made := time.Since(start)
			st, err := os.Stat(input)
			if err != nil {
				t.Fatal(err)
			}
			spool, tmp := filepath.Join(dir, "spool"), filepath.Join(dir, "tmp")
			for _, d := range []string{spool, tmp} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestLargeInputChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "DARC_LARGE_CASE="+strconv.Itoa(i), "DARC_LARGE_INPUT="+input,
				"DARC_LARGE_SPOOL="+spool, "TMPDIR="+tmp)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`RESULT elapsed=(\S+) vmhwm_kib=(\d+) outcome=(.*)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("child printed no result:\n%s", out)
			}
			hwm, _ := strconv.ParseInt(string(m[2]), 10, 64)
			t.Logf("LARGE %s: input %.1f MB (written in %v), child took %s, peak RSS %.1f MiB, outcome: %s",
				c.name, float64(st.Size())/1e6, made.Round(time.Millisecond), m[1], float64(hwm)/1024, m[3])
			if c.maxRSS > 0 && hwm/1024 > c.maxRSS {
				t.Errorf("peak RSS %d MiB, want at most %d MiB", hwm/1024, c.maxRSS)
			}
			for _, d := range []string{spool, tmp} {
				if left, _ := os.ReadDir(d); len(left) != 0 {
					t.Errorf("%s holds %d entries after the child finished", d, len(left))
				}
			}
			if err := os.Remove(input); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLargeInputChild is the child side of TestLargeInputs.
func TestLargeInputChild(t *testing.T) {
	which := os.Getenv("DARC_LARGE_CASE")
	if which == "" {
		t.Skip("only run by TestLargeInputs")
	}
	i, _ := strconv.Atoi(which)
	c := largeCases()[i]
	start := time.Now()
	outcome := "opened and verified"
	err := openVerifyCount(os.Getenv("DARC_LARGE_INPUT"), os.Getenv("DARC_LARGE_SPOOL"), &outcome, c.opts...)
	elapsed := time.Since(start)
	if err != nil {
		outcome = "error " + classify(err) + ": " + shorten(err.Error())
	}
	status, _ := os.ReadFile("/proc/self/status")
	hwm := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status)
	if hwm == nil {
		t.Fatal("no VmHWM in /proc/self/status")
	}
	fmt.Printf("RESULT elapsed=%v vmhwm_kib=%s outcome=%s\n", elapsed.Round(time.Millisecond), hwm[1], outcome)
	switch {
	case c.wantErr == nil && err != nil:
		t.Fatalf("got %v, want a clean open and verify", err)
	case c.wantErr != nil && !errors.Is(err, c.wantErr):
		t.Fatalf("got %v, want %v", err, c.wantErr)
	}
}

// openVerifyCount opens and verifies the archive at path, describing what it found in
// outcome; it returns the open error or the first verify error.
func openVerifyCount(path, spool string, outcome *string, opts ...archive.OpenOption) error {
	a, err := archive.Open(path, append([]archive.OpenOption{archive.WithTempDir(spool)}, opts...)...)
	if err != nil {
		return err
	}
	defer a.Close()
	var first error
	warnings := 0
	for _, p := range a.Verify(context.Background(), 2) {
		switch {
		case p.Warning:
			warnings++
		case first == nil:
			first = p.Err
		}
	}
	*outcome = fmt.Sprintf("opened, %d images, verified with %d warnings", len(a.Images()), warnings)
	return first
}

func shorten(s string) string {
	if i := strings.LastIndex(s, ": "); len(s) > 160 && i > 0 {
		return "…" + s[i:]
	}
	return s
}

// TestDefaultSpoolLimit documents the default decompression-bomb guard: 1 TiB.
func TestDefaultSpoolLimit(t *testing.T) {
	if tarfile.DefaultMaxSpoolSize != 1<<40 {
		t.Errorf("default spool limit %d, want 1 TiB", tarfile.DefaultMaxSpoolSize)
	}
	// And the limit is exact: a stream expanding to exactly the limit is accepted.
	data := archivetest.EdgeImage()
	arch, err := archivetest.BuildBytes([]archivetest.Image{data}, archivetest.Options{Compression: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	if r, err := gzip.NewReader(bytes.NewReader(arch)); err != nil {
		t.Fatal(err)
	} else if size, err = io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := archive.OpenStream(bytes.NewReader(arch), archive.WithMaxSpoolSize(size), archive.WithTempDir(dir))
	if err != nil {
		t.Fatalf("stream of exactly the limit: %v", err)
	}
	a.Close()
	if _, err := archive.OpenStream(bytes.NewReader(arch), archive.WithMaxSpoolSize(size-1), archive.WithTempDir(dir)); !errors.Is(err, archive.ErrTooLarge) {
		t.Fatalf("stream one byte past the limit: got %v, want ErrTooLarge", err)
	}
}
