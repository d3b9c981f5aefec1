package zstdseek

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// FuzzOpen: Open never panics. When it succeeds, the table is consistent with the input,
// reading [0, Size) gives exactly Size bytes or an error, and when it gives the bytes,
// writing them (and the skippable payloads) again gives a stream that opens to the same.
func FuzzOpen(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, size := range []int{0, 1, 100, 1000} {
		s := randomScript(rng, size)
		f.Add(s.run(f, WriterOptions{FrameSize: 512}))
	}
	hello := encode(f, "hello")
	f.Add(seekable([][]byte{hello, skippableFrame("m")}, []entry{{uint32(len(hello)), 5}, {9, 0}}, descChecksum))
	f.Add(hello)

	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if r != nil {
				t.Fatal("Open returned a Reader and an error")
			}
			return
		}
		// Each entry is at least 8 bytes and the table at least 17.
		if n := int64(r.Frames()); n < 0 || 17+n*8+n*minFrameSize > int64(len(b)) {
			t.Fatalf("%d frames in %d bytes", n, len(b))
		}
		if r.Size() < 0 || r.Size() > int64(len(b))*maxBlockSize/3 {
			t.Fatalf("size %d from %d bytes", r.Size(), len(b))
		}
		// Re-write only small contents: a Writer costs ~1 ms to make, and minimizing an
		// interesting input calls this function many times.
		const keep = 64 << 10
		var content []byte
		buf := make([]byte, 64<<10)
		var off int64
		var readErr error
		for off < r.Size() {
			n, err := r.ReadAt(buf, off)
			if r.Size() <= keep {
				content = append(content, buf[:n]...)
			}
			off += int64(n)
			if err != nil {
				if err == io.EOF && off != r.Size() {
					t.Fatalf("io.EOF at %d, size %d", off, r.Size())
				}
				readErr = err
				break
			}
		}
		if readErr == nil && off != r.Size() {
			t.Fatalf("read %d bytes, size %d", off, r.Size())
		}
		payloads, skErr := r.Skippable()
		if readErr != nil || skErr != nil || r.Size() > keep {
			return
		}
		// Write again and compare.
		var out bytes.Buffer
		w, err := NewWriter(&out, WriterOptions{Level: 1, FrameSize: 4096, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(content); err != nil {
			t.Fatal(err)
		}
		for _, p := range payloads {
			if err := w.WriteSkippable(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r2, err := Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("re-written stream: %v", err)
		}
		got := make([]byte, r2.Size())
		if _, err := r2.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("re-written stream: %v", err)
		}
		if !bytes.Equal(got, content) {
			t.Fatal("re-written stream: content differs")
		}
		p2, err := r2.Skippable()
		if err != nil || fmt.Sprintf("%q", p2) != fmt.Sprintf("%q", payloads) {
			t.Fatalf("re-written stream: Skippable got %q, %v; want %q", p2, err, payloads)
		}
	})
}
