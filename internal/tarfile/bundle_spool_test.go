package tarfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// layerData is n bytes that compress about as a layer does: runs of text with random bytes
// between them.
func layerData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, n)
	for len(b) < n {
		b = append(b, "usr/lib/x86_64-linux-gnu/libc.so.6 "...)
		for range rng.IntN(40) {
			b = append(b, byte(rng.Uint32()))
		}
	}
	return b[:n]
}

// bundleOf writes a small member, a blob of unknown size and another small member to a
// seekable bundle, the blob by put, and returns the compressed bytes: with partSize, the
// parts, each after its size as 8 decimal digits.
func bundleOf(t *testing.T, partSize int64, put func(w *Writer) error) []byte {
	t.Helper()
	var parts []*bytes.Buffer
	next := func() (io.Writer, error) {
		parts = append(parts, new(bytes.Buffer))
		return parts[len(parts)-1], nil
	}
	o := CompressOptions{}
	if partSize > 0 {
		o.PartSize, o.NextPart = partSize, next
	}
	first, _ := next()
	cw, err := NewCompressor(first, Zstd, o)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(cw, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFile("before.json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := put(w); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFile("after.json", []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if partSize == 0 {
		return parts[0].Bytes()
	}
	var all []byte
	for _, p := range parts {
		all = fmt.Appendf(all, "%08d", p.Len())
		all = append(all, p.Bytes()...)
	}
	return all
}

// TestBundleSpoolSameBytes: a blob spooled for a bundle (compressed as it arrives when it is
// big enough to get frames of its own) is written with exactly the bytes it would have had
// if it had been streamed through the bundle writer, whatever its size against the frame
// boundaries.
func TestBundleSpoolSameBytes(t *testing.T) {
	sizes := []int{
		100,
		bigMember - 1,
		bigMember,
		bigMember + 1,
		headFrame + 4<<20,       // the rest fills one frame exactly: no padding
		headFrame + 4<<20 + 100, // a frame, then 100 bytes and the padding
		headFrame + 4<<20 - 100, // the padding ends the only frame after the head
		9<<20 + 7,
	}
	dir := t.TempDir()
	t.Cleanup(leakCheck(t))
	for i, n := range sizes {
		data := layerData(n, uint64(i))
		d := digest.FromBytes(data)
		// Split into parts of 2 MiB too, for the largest: a part ends within the blob.
		partSize := int64(0)
		if n > 8<<20 {
			partSize = 2 << 20
		}
		streamed := bundleOf(t, partSize, func(w *Writer) error {
			_, err := w.StreamBlob(bytes.NewReader(data), int64(n), d, layerName)
			return err
		})
		var sp *SpooledBlob
		spooled := bundleOf(t, partSize, func(w *Writer) error {
			var err error
			if sp, err = w.Spool(bytes.NewReader(data), -1, "", dir); err != nil {
				return err
			}
			defer sp.Close()
			if sp.Digest() != d || sp.Size() != int64(n) {
				t.Errorf("size %d: spooled %s, %d bytes; want %s", n, sp.Digest(), sp.Size(), d)
			}
			_, err = w.WriteSpooled(layerName(sp.Digest()), sp)
			return err
		})
		if !bytes.Equal(streamed, spooled) {
			t.Errorf("size %d: the bundle with the spooled blob (%d bytes) differs from the one with it streamed (%d bytes)", n, len(spooled), len(streamed))
		}
		if compressed := sp.frames != nil; compressed != (n >= bigMember) {
			t.Errorf("size %d: spooled compressed %v, want %v", n, compressed, n >= bigMember)
		}
		if n >= bigMember && sp.Stored() >= sp.Size()/2 {
			t.Errorf("size %d: %d bytes stored: not compressed", n, sp.Stored())
		}
		if partSize > 0 {
			if int64(len(spooled)) <= partSize {
				t.Errorf("size %d: %d bytes of parts: the blob was not split", n, len(spooled))
			}
			continue
		}
		if !bytes.Equal(zstdDecode(t, spooled)[3*blockSize:3*blockSize+n], data) {
			t.Errorf("size %d: the decoded member is not the blob", n)
		}
	}
}

// TestBundleSpoolChecks: a compressed spool checks the declared size and digest as
// SpoolBlob does, and keeps no file open when it fails; a spool file that changed or shrank
// before it was written out fails the write, and the failed bundle's Close stops its
// goroutines.
func TestBundleSpoolChecks(t *testing.T) {
	data := layerData(1<<20, 7)
	dir := t.TempDir()
	t.Cleanup(leakCheck(t)) // after the writers' Close, which later cleanups do
	if _, err := spoolingWriter(t).Spool(bytes.NewReader(data), int64(len(data))-1, "", dir); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("declared one byte short: %v, want ErrSizeMismatch", err)
	}
	if _, err := spoolingWriter(t).Spool(bytes.NewReader(data), -1, digest.FromString("x"), dir); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("wrong digest: %v, want ErrDigestMismatch", err)
	}
	for _, tc := range []struct {
		name   string
		damage func(f *os.File, stored int64) error
		want   error
	}{
		{"changed", func(f *os.File, stored int64) error { _, err := f.WriteAt([]byte{0xff}, stored/2); return err }, ErrDigestMismatch},
		{"shrunk", func(f *os.File, stored int64) error { return f.Truncate(stored / 2) }, io.ErrUnexpectedEOF},
	} {
		w := spoolingWriter(t)
		sp, err := w.Spool(bytes.NewReader(data), -1, "", dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.damage(sp.f, sp.Stored()); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteSpooled("layer.tar", sp); !errors.Is(err, tc.want) {
			t.Errorf("%s spool file: %v, want %v", tc.name, err, tc.want)
		}
		if err := sp.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestBundleSpoolOtherWriter: frames spooled for one bundle are refused by another Writer,
// whose frames they might not match, before it writes anything.
func TestBundleSpoolOtherWriter(t *testing.T) {
	sp, err := spoolingWriter(t).Spool(bytes.NewReader(layerData(1<<20, 3)), -1, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	other := spoolingWriter(t)
	if _, err := other.WriteSpooled("layer.tar", sp); err == nil {
		t.Error("another Writer wrote the spooled frames")
	}
	if other.Offset() != 0 || other.Err() != nil {
		t.Errorf("the refusal wrote %d bytes, sticky error %v", other.Offset(), other.Err())
	}
}

// spoolingWriter returns a Writer to a seekable bundle that is thrown away, closed when the
// test ends (a failed bundle's Close returns its failure, which is not the test's concern).
func spoolingWriter(t *testing.T) *Writer {
	t.Helper()
	cw, err := NewCompressor(io.Discard, Zstd, CompressOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cw.Close() })
	w, err := NewWriter(cw, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// leakCheck returns a function that reports the files left open and the goroutines left
// running since leakCheck was called, to run as a cleanup registered before any other.
// Files are counted on Linux only.
func leakCheck(t *testing.T) func() {
	files, routines := openFiles(), runtime.NumGoroutine()
	return func() {
		t.Helper()
		if n := openFiles(); n != files {
			t.Errorf("%d files left open", n-files)
		}
		// Goroutines that were told to stop may still be on their way out.
		for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > routines && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > routines {
			t.Errorf("%d goroutines left running", n-routines)
		}
	}
}

// openFiles counts the process's open file descriptors (0 where /proc is missing).
func openFiles() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
