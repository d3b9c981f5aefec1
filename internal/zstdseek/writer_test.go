package zstdseek

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// op is one call on a Writer: a Write of data, an EndFrame, or a WriteSkippable.
type op struct {
	kind    byte // 'w', 'e', 's'
	data    []byte
	payload []byte
}

// script is a sequence of calls and what they mean: the decompressed bytes and the
// skippable payloads.
type script struct {
	ops      []op
	want     []byte
	payloads [][]byte
}

// textish returns n bytes of moderately compressible, text-like data.
func textish(rng *rand.Rand, n int) []byte {
	words := []string{"layer", "manifest", "sha256:", "blob", "config", "image", "tar", "\n",
		"registry", "docker", "zstd", "frame", " ", " ", "{", "}", "\"", "0", "1", "2"}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if rng.IntN(8) == 0 {
			b = append(b, byte('a'+rng.IntN(26)))
			continue
		}
		b = append(b, words[rng.IntN(len(words))]...)
	}
	return b[:n]
}

// randomScript writes size bytes in random pieces, with EndFrame at random points, a
// skippable frame in the middle and one at the end.
func randomScript(rng *rand.Rand, size int) script {
	data := textish(rng, size)
	var s script
	s.want = data
	mid := size / 2
	pos := 0
	skipped := false
	for pos < size {
		if !skipped && pos >= mid {
			p := textish(rng, rng.IntN(100))
			s.ops = append(s.ops, op{kind: 's', payload: p})
			s.payloads = append(s.payloads, p)
			skipped = true
		}
		n := min(size-pos, 1+rng.IntN(1+size/5))
		s.ops = append(s.ops, op{kind: 'w', data: data[pos : pos+n]})
		pos += n
		if rng.IntN(3) == 0 {
			s.ops = append(s.ops, op{kind: 'e'})
		}
	}
	if !skipped {
		p := []byte("middle")
		s.ops = append(s.ops, op{kind: 's', payload: p})
		s.payloads = append(s.payloads, p)
	}
	p := []byte("end payload")
	s.ops = append(s.ops, op{kind: 's', payload: p})
	s.payloads = append(s.payloads, p)
	return s
}

// run plays s on a new Writer and returns the output.
func (s script) run(t testing.TB, o WriterOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range s.ops {
		switch op.kind {
		case 'w':
			n, err := w.Write(op.data)
			if err != nil || n != len(op.data) {
				t.Fatalf("Write: got %d, %v; want %d, nil", n, err, len(op.data))
			}
		case 'e':
			if err := w.EndFrame(); err != nil {
				t.Fatalf("EndFrame: %v", err)
			}
		case 's':
			if err := w.WriteSkippable(op.payload); err != nil {
				t.Fatalf("WriteSkippable: %v", err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return out.Bytes()
}

func streamDecode(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("streaming decode: %v", err)
	}
	return got
}

var sizes = []struct {
	name      string
	size      int
	frameSize int
}{
	{"empty", 0, 0},
	{"one byte", 1, 0},
	{"small frames", 10_000, 100},
	{"one frame", 100_000, 0},
	{"several frames", 1 << 20, 64 << 10},
	{"frame size 1", 300, 1},
}

// The output is plain zstd: a streaming decoder (and zstd -d) gives back exactly the
// bytes written, skipping the skippable frames and the seek table.
func TestWriterOutputDecodes(t *testing.T) {
	zstdCLI, _ := exec.LookPath("zstd")
	for i, tc := range sizes {
		t.Run(tc.name, func(t *testing.T) {
			s := randomScript(rand.New(rand.NewPCG(uint64(i), 1)), tc.size)
			out := s.run(t, WriterOptions{FrameSize: tc.frameSize})
			if got := streamDecode(t, out); !bytes.Equal(got, s.want) {
				t.Fatalf("streaming decode: got %d bytes, want %d (contents differ)", len(got), len(s.want))
			}
			if zstdCLI == "" {
				t.Log("zstd CLI not found; skipping its check")
				return
			}
			f := filepath.Join(t.TempDir(), "x.zst")
			if err := os.WriteFile(f, out, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := exec.Command(zstdCLI, "-d", "-c", "-q", f).Output()
			if err != nil {
				t.Fatalf("zstd -d: %v", err)
			}
			if !bytes.Equal(got, s.want) {
				t.Fatalf("zstd -d: got %d bytes, want %d (contents differ)", len(got), len(s.want))
			}
		})
	}
}

// An empty stream is the seek table alone, which zstd -d accepts as empty.
func TestWriterEmpty(t *testing.T) {
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.EndFrame(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x5e, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("got % x, want % x", out.Bytes(), want)
	}
}

// Same calls and level give the same bytes, whatever the concurrency and the Write split.
func TestWriterDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := randomScript(rng, 3<<20)
	// The same stream, written in 1-byte-to-large pieces and with the frame cuts in the same
	// places: split every Write in two at random.
	var split script
	for _, o := range s.ops {
		if o.kind == 'w' && len(o.data) > 1 {
			k := rng.IntN(len(o.data))
			split.ops = append(split.ops, op{kind: 'w', data: o.data[:k]}, op{kind: 'w', data: o.data[k:]})
			continue
		}
		split.ops = append(split.ops, o)
	}
	want := s.run(t, WriterOptions{FrameSize: 256 << 10, Concurrency: 1})
	for _, tc := range []struct {
		name string
		s    script
		conc int
	}{
		{"concurrency 2", s, 2},
		{"concurrency 8", s, 8},
		{"split writes, concurrency 1", split, 1},
		{"split writes, concurrency 8", split, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.s.run(t, WriterOptions{FrameSize: 256 << 10, Concurrency: tc.conc})
			if !bytes.Equal(got, want) {
				t.Fatalf("output differs from concurrency 1: %d bytes vs %d", len(got), len(want))
			}
		})
	}
}

// failAfter accepts n bytes, then fails every write.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// A failed write of the underlying writer is returned by every later call.
func TestWriterStickyError(t *testing.T) {
	boom := errors.New("boom")
	w, err := NewWriter(&failAfter{n: 10, err: boom}, WriterOptions{FrameSize: 1000, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	data := textish(rand.New(rand.NewPCG(1, 2)), 1000)
	var sawErr bool
	for range 50 {
		if _, err := w.Write(data); err != nil {
			if !errors.Is(err, boom) {
				t.Fatalf("Write: got %v, want %v", err, boom)
			}
			sawErr = true
			break
		}
	}
	if !sawErr {
		// The output goroutine may not have failed yet; Close waits for it.
		t.Log("no Write saw the error before Close")
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: got %v, want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("second Close: got %v, want %v", err, boom)
	}
	if _, err := w.Write(data); err == nil {
		t.Fatal("Write after Close: got nil error")
	}
	if err := w.EndFrame(); err == nil {
		t.Fatal("EndFrame after Close: got nil error")
	}
}

func TestNewWriterOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    WriterOptions
		ok   bool
	}{
		{"defaults", WriterOptions{}, true},
		{"level 19", WriterOptions{Level: 19}, true},
		{"level 22", WriterOptions{Level: 22}, true},
		{"level 23", WriterOptions{Level: 23}, false},
		{"negative level", WriterOptions{Level: -1}, false},
		{"frame size 256 MiB", WriterOptions{FrameSize: 256 << 20}, true},
		{"frame size above 256 MiB", WriterOptions{FrameSize: 256<<20 + 1}, false},
		{"negative frame size", WriterOptions{FrameSize: -1}, false},
		{"negative concurrency", WriterOptions{Concurrency: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, tc.o)
			if (err == nil) != tc.ok {
				t.Fatalf("NewWriter(%+v): got error %v, want ok=%v", tc.o, err, tc.ok)
			}
			if w != nil {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestSpoolAppendFrames: bytes compressed by a spool and appended with AppendFrames give
// the stream that writing them to the Writer itself, then ending the frame, gives; a reader
// that runs short is an error.
func TestSpoolAppendFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	head, body, tail := textish(rng, 1000), textish(rng, 2<<20+123), textish(rng, 500)
	o := WriterOptions{FrameSize: 512 << 10}
	write := func(t *testing.T, put func(w *Writer) error) []byte {
		t.Helper()
		var buf bytes.Buffer
		w, err := NewWriter(&buf, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(head); err != nil {
			t.Fatal(err)
		}
		if err := put(w); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(tail); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	direct := write(t, func(w *Writer) error {
		if err := w.EndFrame(); err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
		return w.EndFrame()
	})
	var spooled bytes.Buffer
	var frames Frames
	appended := write(t, func(w *Writer) error {
		sw := w.Spool(&spooled)
		if _, err := sw.Write(body); err != nil {
			return err
		}
		if got := sw.Frames(); got.Size() != 0 {
			t.Errorf("Frames before Close: %d bytes", got.Size())
		}
		if err := sw.Close(); err != nil {
			return err
		}
		frames = sw.Frames()
		return w.AppendFrames(bytes.NewReader(spooled.Bytes()), frames)
	})
	if !bytes.Equal(direct, appended) {
		t.Errorf("appended frames give %d bytes, writing directly %d: they differ", len(appended), len(direct))
	}
	if frames.Size() != int64(spooled.Len()) || frames.DecompressedSize() != int64(len(body)) {
		t.Errorf("Frames: %d bytes of %d, want %d of %d", frames.Size(), frames.DecompressedSize(), spooled.Len(), len(body))
	}
	if !bytes.Equal(streamDecode(t, appended), append(append(head, body...), tail...)) {
		t.Error("the stream does not decode to what was written")
	}

	w, err := NewWriter(io.Discard, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	short := bytes.NewReader(spooled.Bytes()[:spooled.Len()-1])
	if err := w.AppendFrames(short, frames); err == nil {
		t.Error("AppendFrames from a short reader succeeded")
	}
}

// TestWriterAbort: Abort stops a Writer without a seek table or the frame being filled, and
// its goroutines end; later calls fail.
func TestWriterAbort(t *testing.T) {
	before := runtime.NumGoroutine()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, WriterOptions{FrameSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	data := textish(rand.New(rand.NewPCG(9, 9)), 200<<10)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if buf.Len() >= 4 && binary.LittleEndian.Uint32(buf.Bytes()[buf.Len()-4:]) == seekableMagic {
		t.Error("an aborted Writer wrote a seek table")
	}
	if _, err := zstdDecodeAll(buf.Bytes()); err != nil {
		t.Errorf("what was written before Abort is not whole frames: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left running", n-before)
	}
}

// zstdDecodeAll decodes b, which may hold no frame at all.
func zstdDecodeAll(b []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return dec.DecodeAll(b, nil)
}
