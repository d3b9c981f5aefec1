package zstdseek

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func open(t testing.TB, b []byte) *Reader {
	t.Helper()
	r, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// Write, Open, then ReadAt at random offsets and lengths gives the bytes written, and
// Skippable the payloads.
func TestRoundTrip(t *testing.T) {
	for i, tc := range sizes {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			s := randomScript(rng, tc.size)
			out := s.run(t, WriterOptions{FrameSize: tc.frameSize, Concurrency: 3})
			r := open(t, out)
			if got, want := r.Size(), int64(len(s.want)); got != want {
				t.Fatalf("Size: got %d, want %d", got, want)
			}
			all := make([]byte, len(s.want))
			if n, err := r.ReadAt(all, 0); n != len(all) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt(all): got %d, %v", n, err)
			}
			if !bytes.Equal(all, s.want) {
				t.Fatal("ReadAt(all): contents differ")
			}
			for range 200 {
				off := rng.Int64N(int64(len(s.want)) + 10)
				p := make([]byte, rng.IntN(len(s.want)/3+10))
				n, err := r.ReadAt(p, off)
				want := s.want[min(off, int64(len(s.want))):]
				want = want[:min(len(want), len(p))]
				if n != len(want) || !bytes.Equal(p[:n], want) {
					t.Fatalf("ReadAt(%d bytes, %d): got %d bytes, want %d (or contents differ)", len(p), off, n, len(want))
				}
				switch {
				case n < len(p) && err != io.EOF:
					t.Fatalf("ReadAt(%d bytes, %d): short read with error %v, want io.EOF", len(p), off, err)
				case n == len(p) && err != nil && err != io.EOF:
					t.Fatalf("ReadAt(%d bytes, %d): %v", len(p), off, err)
				}
			}
			got, err := r.Skippable()
			if err != nil {
				t.Fatalf("Skippable: %v", err)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", s.payloads) {
				t.Fatalf("Skippable: got %q, want %q", got, s.payloads)
			}
		})
	}
}

// Many goroutines reading at once, sequentially or at random offsets, get the right bytes
// while frames are evicted from the cache and their buffers reused (run with -race).
func TestConcurrentReadAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	s := randomScript(rng, 2<<20)
	r := open(t, s.run(t, WriterOptions{FrameSize: 64 << 10}))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(g%4) * 1000 // several goroutines on the same frames
			p := make([]byte, 10_000)
			jump := rand.New(rand.NewPCG(uint64(g), 0))
			for off < r.Size() {
				if g >= 8 { // the rest read here and there
					off = jump.Int64N(r.Size())
				}
				n, err := r.ReadAt(p, off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(p[:n], s.want[off:off+int64(n)]) {
					errs <- fmt.Errorf("goroutine %d: contents differ at %d", g, off)
					return
				}
				off += int64(n)
				if g >= 8 && jump.IntN(50) == 0 {
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Buffers are reused, not made per frame: at most one per frame held at once (cached,
	// being decompressed, or being copied from by one of the 16 readers) is left over.
	r.mu.Lock()
	defer r.mu.Unlock()
	if held := len(r.free) + len(r.cache); held > cacheFrames+cap(r.slots)+16 {
		t.Errorf("%d frame buffers kept after the reads, want at most %d", held, cacheFrames+cap(r.slots)+16)
	}
}

// seekable builds a stream from frames and a table written as given (possibly wrong).
func seekable(frames [][]byte, entries []entry, desc byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	esize := entrySize
	if desc&descChecksum != 0 {
		esize = entrySizeChecksum
	}
	b = binary.LittleEndian.AppendUint32(b, seekTableMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)*esize+footerSize))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, e.c)
		b = binary.LittleEndian.AppendUint32(b, e.d)
		if esize == entrySizeChecksum {
			b = binary.LittleEndian.AppendUint32(b, 0xdeadbeef)
		}
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = append(b, desc)
	return binary.LittleEndian.AppendUint32(b, seekableMagic)
}

func encode(t testing.TB, s string) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll([]byte(s), nil)
}

func skippableFrame(payload string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, skippableMagicLow+3)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// Tables from other writers: checksums (ignored), unused descriptor bits, an empty zstd
// frame with an entry (not a skippable payload), other skippable magics.
func TestOpenOtherWriters(t *testing.T) {
	hello, world, empty := encode(t, "hello, "), encode(t, "world"), encode(t, "")
	meta := skippableFrame("meta")
	frames := [][]byte{hello, meta, empty, world}
	entries := []entry{
		{uint32(len(hello)), 7}, {uint32(len(meta)), 0}, {uint32(len(empty)), 0}, {uint32(len(world)), 5},
	}
	for _, tc := range []struct {
		name string
		desc byte
	}{
		{"no checksums", 0},
		{"checksums", descChecksum},
		{"unused bits set", 0x03},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := open(t, seekable(frames, entries, tc.desc))
			if r.Frames() != 4 || r.Size() != 12 {
				t.Fatalf("got %d frames, size %d; want 4, 12", r.Frames(), r.Size())
			}
			got := make([]byte, 12)
			if _, err := r.ReadAt(got, 0); err != nil || string(got) != "hello, world" {
				t.Fatalf("ReadAt: got %q, %v; want %q, nil", got, err, "hello, world")
			}
			p, err := r.Skippable()
			if err != nil || len(p) != 1 || string(p[0]) != "meta" {
				t.Fatalf("Skippable: got %q, %v; want [meta]", p, err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	hello, world := encode(t, "hello, "), encode(t, "world")
	good := []entry{{uint32(len(hello)), 7}, {uint32(len(world)), 5}}
	frames := [][]byte{hello, world}
	valid := seekable(frames, good, 0)
	modified := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotSeekable},
		{"plain zstd", encode(t, "hello, world, this is plain zstd"), ErrNotSeekable},
		{"footer alone", valid[len(valid)-footerSize:], ErrNotSeekable},
		{"sizes do not sum", seekable(frames, []entry{{uint32(len(hello)) + 1, 7}, {uint32(len(world)), 5}}, 0), ErrBadSeekTable},
		{"sizes sum short", seekable(frames, []entry{{uint32(len(hello)) - 1, 7}, {uint32(len(world)), 5}}, 0), ErrBadSeekTable},
		{"frame missing from table", seekable(frames, good[1:], 0), ErrBadSeekTable},
		{"reserved bit", modified(func(b []byte) { b[len(b)-5] = 0x04 }), ErrBadSeekTable},
		{"checksum flag on plain table", modified(func(b []byte) { b[len(b)-5] = descChecksum }), ErrBadSeekTable},
		{"frame count too big", modified(func(b []byte) { b[len(b)-9] = 3 }), ErrBadSeekTable},
		{"frame count huge", modified(func(b []byte) { binary.LittleEndian.PutUint32(b[len(b)-9:], 0xffffffff) }), ErrBadSeekTable},
		{"table magic", modified(func(b []byte) { b[len(hello)+len(world)] ^= 1 }), ErrBadSeekTable},
		{"table length", modified(func(b []byte) { b[len(hello)+len(world)+4]++ }), ErrBadSeekTable},
		{"entry over 256 MiB", seekable(frames, []entry{{uint32(len(hello)), 256<<20 + 1}, {uint32(len(world)), 5}}, 0), ErrBadSeekTable},
		{"more than its blocks can hold", seekable(frames, []entry{{uint32(len(hello)), uint32(len(hello))*maxBlockSize/3 + 1}, {uint32(len(world)), 5}}, 0), ErrBadSeekTable},
		{"entry smaller than a frame", seekable([][]byte{hello}, []entry{{uint32(len(hello)) - 4, 7}, {4, 0}}, 0), ErrBadSeekTable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(tc.b), int64(len(tc.b)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: got %v, %v; want error %v", r, err, tc.want)
			}
		})
	}
}

// A valid stream cut anywhere in its last 200 bytes gives an error, never a panic.
func TestOpenTruncated(t *testing.T) {
	s := randomScript(rand.New(rand.NewPCG(5, 5)), 5000)
	b := s.run(t, WriterOptions{FrameSize: 100})
	for cut := max(0, len(b)-200); cut < len(b); cut++ {
		_, err := Open(bytes.NewReader(b[:cut]), int64(cut))
		if !errors.Is(err, ErrNotSeekable) && !errors.Is(err, ErrBadSeekTable) {
			t.Fatalf("Open of %d of %d bytes: got %v, want ErrNotSeekable or ErrBadSeekTable", cut, len(b), err)
		}
	}
	// A size larger than the data: Open fails reading.
	if _, err := Open(bytes.NewReader(b), int64(len(b))+100); err == nil {
		t.Fatal("Open with a size past the data: got nil error")
	}
}

// A frame whose content disagrees with its table entry: Open succeeds (frames are not read),
// ReadAt fails naming the frame.
func TestReadAtBadFrame(t *testing.T) {
	hello, world := encode(t, "hello, "), encode(t, "world")
	corrupt := bytes.Clone(world)
	corrupt[len(corrupt)-1] ^= 0xff // the content checksum
	for _, tc := range []struct {
		name    string
		frames  [][]byte
		entries []entry
		off     int64
		want    error // nil: any error
	}{
		{"entry says more", [][]byte{hello, world}, []entry{{uint32(len(hello)), 8}, {uint32(len(world)), 5}}, 0, ErrBadSeekTable},
		{"entry says less", [][]byte{hello, world}, []entry{{uint32(len(hello)), 6}, {uint32(len(world)), 6}}, 0, ErrBadSeekTable},
		{"second frame", [][]byte{hello, world}, []entry{{uint32(len(hello)), 7}, {uint32(len(world)), 4}}, 8, ErrBadSeekTable},
		{"skippable frame listed with content", [][]byte{hello, skippableFrame("xx")}, []entry{{uint32(len(hello)), 7}, {10, 2}}, 7, nil},
		{"corrupt frame", [][]byte{hello, corrupt}, []entry{{uint32(len(hello)), 7}, {uint32(len(corrupt)), 5}}, 8, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := open(t, seekable(tc.frames, tc.entries, 0))
			_, err := r.ReadAt(make([]byte, 1), tc.off)
			if err == nil || err == io.EOF || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("ReadAt: got %v, want an error (%v)", err, tc.want)
			}
			if _, err := r.ReadAt(make([]byte, 1), tc.off); err == nil {
				t.Fatal("second ReadAt: got nil error (a failed frame must not be cached)")
			}
		})
	}
}

func TestReadAtEOF(t *testing.T) {
	r := open(t, seekable([][]byte{encode(t, "abc")}, []entry{{uint32(len(encode(t, "abc"))), 3}}, 0))
	for _, tc := range []struct {
		name  string
		n     int
		off   int64
		wantN int
		eof   bool
	}{
		{"all", 3, 0, 3, false},
		{"past the end", 4, 0, 3, true},
		{"at the end", 1, 3, 0, true},
		{"after the end", 1, 10, 0, true},
		{"empty read inside", 0, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := r.ReadAt(make([]byte, tc.n), tc.off)
			if n != tc.wantN || (err == io.EOF) != tc.eof || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt(%d, %d): got %d, %v; want %d, EOF=%v", tc.n, tc.off, n, err, tc.wantN, tc.eof)
			}
		})
	}
	if _, err := r.ReadAt(make([]byte, 1), -1); err == nil || err == io.EOF {
		t.Fatalf("ReadAt at -1: got %v, want an error", err)
	}
}
