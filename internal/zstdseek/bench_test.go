package zstdseek

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// BenchmarkWriter: 64 MiB of text-like data through a Writer with the default options
// (4 MiB frames, level 3, GOMAXPROCS workers).
func BenchmarkWriter(b *testing.B) {
	data := textish(rand.New(rand.NewPCG(1, 1)), 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var compressed int
	for b.Loop() {
		var out countWriter
		w, err := NewWriter(&out, WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for p := data; len(p) > 0; p = p[min(len(p), 1<<20):] {
			if _, err := w.Write(p[:min(len(p), 1<<20)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		compressed = int(out)
	}
	b.ReportMetric(float64(compressed)/float64(len(data)), "ratio")
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// BenchmarkReadAt: random 1 MiB reads from a 64 MiB stream of 4 MiB frames (mostly cache
// misses: 16 frames, 8 cached).
func BenchmarkReadAt(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	data := textish(rng, 64<<20)
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	r, err := Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for b.Loop() {
		off := rng.Int64N(r.Size() - int64(len(p)))
		if _, err := r.ReadAt(p, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
