package zstdseek

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// runParts plays s on a Writer that splits its output into parts of partSize bytes, and
// returns the parts.
func (s script) runParts(t *testing.T, frameSize int, partSize int64) [][]byte {
	t.Helper()
	parts := []*bytes.Buffer{{}}
	next := func() (io.Writer, error) {
		parts = append(parts, &bytes.Buffer{})
		return parts[len(parts)-1], nil
	}
	w, err := NewWriter(parts[0], WriterOptions{FrameSize: frameSize, PartSize: partSize, NextPart: next})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range s.ops {
		switch op.kind {
		case 'w':
			_, err = w.Write(op.data)
		case 'e':
			err = w.EndFrame()
		case 's':
			err = w.WriteSkippable(op.payload)
		}
		if err != nil {
			t.Fatalf("%c: %v", op.kind, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	out := make([][]byte, len(parts))
	for i, p := range parts {
		out[i] = p.Bytes()
	}
	return out
}

// A split stream is several seekable streams, each at most the part size and readable on
// its own; together, concatenated, they are one zstd stream of the bytes written, and
// OpenParts reads them as one seekable stream.
func TestWriterParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := randomScript(rng, 600_000)
	const partSize = 40_000
	parts := s.runParts(t, 16<<10, partSize)
	if len(parts) < 3 {
		t.Fatalf("%d parts; want several for %d bytes of output", len(parts), partSize)
	}
	var all []byte
	var sizes []int64
	var inParts []byte
	for i, p := range parts {
		if len(p) > partSize {
			t.Errorf("part %d: %d bytes, more than %d", i, len(p), partSize)
		}
		zr := open(t, p)
		got := make([]byte, zr.Size())
		if _, err := zr.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatalf("part %d alone: %v", i, err)
		}
		inParts = append(inParts, got...)
		all = append(all, p...)
		sizes = append(sizes, int64(len(p)))
	}
	if !bytes.Equal(inParts, s.want) {
		t.Fatal("the parts' contents, one after another, are not the bytes written")
	}
	if !bytes.Equal(streamDecode(t, all), s.want) {
		t.Fatal("the concatenated parts do not stream-decode to the bytes written")
	}
	zr, err := OpenParts(bytes.NewReader(all), sizes)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Size() != int64(len(s.want)) {
		t.Fatalf("OpenParts: size %d, want %d", zr.Size(), len(s.want))
	}
	for _, off := range []int64{0, 1, partSize - 3, int64(len(s.want)) / 2, int64(len(s.want)) - 10} {
		got := make([]byte, 10)
		if _, err := zr.ReadAt(got, off); err != nil {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
		if !bytes.Equal(got, s.want[off:off+10]) {
			t.Fatalf("ReadAt %d: wrong bytes", off)
		}
	}
	payloads, err := zr.Skippable()
	if err != nil || len(payloads) != len(s.payloads) {
		t.Fatalf("Skippable: %d payloads, %v; want %d", len(payloads), err, len(s.payloads))
	}
	again := s.runParts(t, 16<<10, partSize)
	if len(again) != len(parts) || !bytes.Equal(bytes.Join(again, nil), all) {
		t.Fatal("the same writes split differently")
	}
}

// A frame that cannot fit in a part, even alone, is an error, not an oversized part.
func TestWriterPartTooSmall(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	next := func() (io.Writer, error) { return io.Discard, nil }
	w, err := NewWriter(io.Discard, WriterOptions{FrameSize: 64 << 10, PartSize: 1000, NextPart: next})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(textish(rng, 200_000)); err != nil && !strings.Contains(err.Error(), "does not fit") {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "does not fit in parts of 1000 bytes") {
		t.Fatalf("Close: %v; want a frame that does not fit", err)
	}
	if _, err := NewWriter(io.Discard, WriterOptions{PartSize: 1000}); err == nil {
		t.Fatal("PartSize without NextPart was accepted")
	}
}

// OpenParts names the part whose table is wrong.
func TestOpenPartsErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	parts := randomScript(rng, 200_000).runParts(t, 16<<10, 30_000)
	all := bytes.Join(parts, nil)
	sizes := make([]int64, len(parts))
	for i, p := range parts {
		sizes[i] = int64(len(p))
	}
	// The first part given as two: its first piece has no seek table.
	wrong := append([]int64{sizes[0] - 100, 100}, sizes[1:]...)
	if _, err := OpenParts(bytes.NewReader(all), wrong); err == nil || !strings.Contains(err.Error(), "part 1:") {
		t.Fatalf("OpenParts with a part cut short: %v; want an error naming part 1", err)
	}
	if _, err := OpenParts(bytes.NewReader(all), nil); err == nil {
		t.Fatal("OpenParts of no parts succeeded")
	}
}
