package zstdseek

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// cacheFrames is how many decompressed frames a Reader keeps: enough for a few readers
// reading sequentially at once to each keep theirs.
const cacheFrames = 6

// tableChunk bounds each read of the seek table entries, so that a footer claiming many
// entries costs memory only as the entries are actually read.
const tableChunk = 64 << 10

// maxBlockSize is zstd's largest block content. Every block has a 3-byte header, so a frame
// of c bytes holds less than c/3 blocks, hence at most c/3×128 KiB decompressed bytes: an
// entry claiming more is impossible, and ReadAt never allocates more than that per frame.
const maxBlockSize = 128 << 10

// maxCompressedFrame bounds the compressed size of a frame that has content, which ReadAt
// reads whole: zstd expands incompressible data by a few bytes per 128 KiB block.
const maxCompressedFrame = maxFrameSize + maxFrameSize/8

// A Reader reads the decompressed content of a seekable zstd stream at any offset.
//
// A Reader is safe for concurrent use: the seek table is not modified after Open, and the
// cache of decompressed frames is guarded by a mutex. Concurrent reads that need the same
// frame decompress it once, and buffers are reused rather than made for each frame.
type Reader struct {
	ra      io.ReaderAt
	frames  []frame // in file order
	size    int64   // decompressed size
	dec     *zstd.Decoder
	bufSize int // the capacity of reused buffers: the largest frame's size, at most maxReused
	srcSize int // the capacity of reused compressed buffers, likewise
	// slots bounds the frames being decompressed at once to the decoder's concurrency, so
	// that readers waiting for it do not each hold a compressed and a decompressed frame.
	// Each slot carries its buffer for compressed frames (nil until first needed).
	slots chan []byte

	mu       sync.Mutex
	cache    []cached      // most recently used first; guarded by mu
	inflight map[int]*call // frames being decompressed; guarded by mu
	free     [][]byte      // decompressed frames' buffers no one holds, for reuse; guarded by mu
}

// frame is a seek table entry with its offsets.
type frame struct {
	cOff, dOff int64
	c, d       uint32
}

// buffer is one decompressed frame, shared by the cache and the reads copying out of it. Its
// holders are counted (under Reader.mu): the last to let go hands the memory back for the
// next frame, so reading a bundle does not leave a frame's worth of garbage per frame.
type buffer struct {
	data []byte // never modified while held
	mem  []byte // the memory data is in, all of it
	refs int
}

type cached struct {
	i   int
	buf *buffer
}

// call is one decompression that concurrent readers of the same frame wait for; each
// waiter holds a reference to buf once done is closed.
type call struct {
	done    chan struct{}
	waiters int
	buf     *buffer
	err     error
}

// maxReused is the largest size of buffer a Reader reuses: twice the frames Writer cuts by
// default.
const maxReused = 8 << 20

// Open reads and validates the seek table of the size bytes of r. It returns an error
// wrapping ErrNotSeekable when they do not end with a seek table footer, and one wrapping
// ErrBadSeekTable when the table is inconsistent with itself or with size. The frames are
// not read until ReadAt needs them.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	return OpenParts(r, []int64{size})
}

// OpenParts opens seekable zstd streams stored one after another in r, of the given sizes,
// as one: the Reader's content is the parts' contents, concatenated. Each part must end with
// its own seek table. Errors are as Open's, naming the part when there are several.
func OpenParts(r io.ReaderAt, sizes []int64) (*Reader, error) {
	if len(sizes) == 0 {
		return nil, fmt.Errorf("%w: no parts", ErrNotSeekable)
	}
	var frames []frame
	var base, dOff int64
	for i, size := range sizes {
		var err error
		frames, dOff, err = readTable(r, base, size, frames, dOff)
		if err != nil {
			if len(sizes) > 1 {
				return nil, fmt.Errorf("part %d: %w", i+1, err)
			}
			return nil, err
		}
		base += size
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxWindow(128<<20),
		zstd.WithDecoderLowmem(false),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstdseek: %w", err)
	}
	bufSize, srcSize := 0, 0
	for _, f := range frames {
		bufSize = max(bufSize, min(int(f.d), maxReused))
		srcSize = max(srcSize, min(int(f.c), maxReused))
	}
	return &Reader{
		slots:    newSlots(runtime.GOMAXPROCS(0)),
		ra:       r,
		bufSize:  bufSize,
		srcSize:  srcSize,
		frames:   frames,
		size:     dOff,
		dec:      dec,
		inflight: make(map[int]*call),
	}, nil
}

// readTable reads and validates the seek table of the size bytes of r at base, and appends
// its frames to frames, their content starting at dOff. It returns the offset where their
// content ends.
func readTable(r io.ReaderAt, base, size int64, frames []frame, dOff int64) ([]frame, int64, error) {
	if size < footerSize+skippableHeaderSize {
		return nil, 0, fmt.Errorf("%w: %d bytes is too short", ErrNotSeekable, size)
	}
	var foot [footerSize]byte
	if err := readFull(r, foot[:], base+size-footerSize); err != nil {
		return nil, 0, fmt.Errorf("zstdseek: reading footer: %w", err)
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, 0, ErrNotSeekable
	}
	n := int64(binary.LittleEndian.Uint32(foot[0:]))
	desc := foot[4]
	if desc&descReserved != 0 {
		return nil, 0, fmt.Errorf("%w: reserved descriptor bits set (%#02x)", ErrBadSeekTable, desc)
	}
	esize := int64(entrySize)
	if desc&descChecksum != 0 {
		esize = entrySizeChecksum
	}
	if n > maxFrames-int64(len(frames)) {
		return nil, 0, fmt.Errorf("%w: %d frames, more than %d", ErrBadSeekTable, int64(len(frames))+n, maxFrames)
	}
	tableSize := skippableHeaderSize + n*esize + footerSize
	// Each entry describes a frame of at least minFrameSize bytes before the table.
	if tableSize+n*minFrameSize > size {
		return nil, 0, fmt.Errorf("%w: %d frames do not fit in %d bytes", ErrBadSeekTable, n, size)
	}
	tableOff := size - tableSize
	var head [skippableHeaderSize]byte
	if err := readFull(r, head[:], base+tableOff); err != nil {
		return nil, 0, fmt.Errorf("zstdseek: reading seek table: %w", err)
	}
	if m := binary.LittleEndian.Uint32(head[:]); m != seekTableMagic {
		return nil, 0, fmt.Errorf("%w: seek table frame magic %#08x, want %#08x", ErrBadSeekTable, m, uint32(seekTableMagic))
	}
	if l := int64(binary.LittleEndian.Uint32(head[4:])); l != tableSize-skippableHeaderSize {
		return nil, 0, fmt.Errorf("%w: seek table frame length %d, want %d for %d frames", ErrBadSeekTable, l, tableSize-skippableHeaderSize, n)
	}

	if frames == nil {
		frames = make([]frame, 0, min(n, tableChunk/esize))
	}
	var cOff int64
	buf := make([]byte, min(n*esize, tableChunk/esize*esize))
	for off, i := base+tableOff+skippableHeaderSize, int64(0); i < n; {
		k := min(n-i, int64(len(buf))/esize)
		b := buf[:k*esize]
		if err := readFull(r, b, off); err != nil {
			return nil, 0, fmt.Errorf("zstdseek: reading seek table: %w", err)
		}
		off += int64(len(b))
		for ; len(b) > 0; b = b[esize:] {
			f := frame{
				cOff: base + cOff, dOff: dOff,
				c: binary.LittleEndian.Uint32(b),
				d: binary.LittleEndian.Uint32(b[4:]),
			}
			if err := f.check(i); err != nil {
				return nil, 0, err
			}
			cOff += int64(f.c)
			dOff += int64(f.d)
			if cOff > tableOff {
				return nil, 0, fmt.Errorf("%w: frame %d ends at %d, after the seek table at %d", ErrBadSeekTable, i, cOff, tableOff)
			}
			frames = append(frames, f)
			i++
		}
	}
	if cOff != tableOff {
		return nil, 0, fmt.Errorf("%w: frames end at %d, but the seek table starts at %d", ErrBadSeekTable, cOff, tableOff)
	}
	return frames, dOff, nil
}

// check refuses an entry no frame can match; i is its number in its table.
func (f frame) check(i int64) error {
	switch {
	case f.c < minFrameSize:
		return fmt.Errorf("%w: frame %d: compressed size %d is too small", ErrBadSeekTable, i, f.c)
	case f.d > maxFrameSize:
		return fmt.Errorf("%w: frame %d: decompressed size %d exceeds %d", ErrBadSeekTable, i, f.d, maxFrameSize)
	case f.d > 0 && f.c > maxCompressedFrame:
		return fmt.Errorf("%w: frame %d: compressed size %d exceeds %d", ErrBadSeekTable, i, f.c, maxCompressedFrame)
	case uint64(f.d)*3 > uint64(f.c)*maxBlockSize:
		return fmt.Errorf("%w: frame %d: %d compressed bytes cannot hold %d decompressed bytes", ErrBadSeekTable, i, f.c, f.d)
	}
	return nil
}

// Size returns the decompressed size: the sum of the table's decompressed sizes.
func (r *Reader) Size() int64 { return r.size }

// Frames returns the number of frames the seek table lists, skippable frames included.
func (r *Reader) Frames() int { return len(r.frames) }

// ReadAt reads len(p) decompressed bytes starting at offset off, as io.ReaderAt specifies:
// it returns io.EOF when fewer bytes remain. A frame whose content does not match its table
// entry gives an error wrapping ErrBadSeekTable.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("zstdseek: negative offset %d", off)
	}
	n := 0
	for n < len(p) && off < r.size {
		// The first frame that ends after off; it is not empty, since the previous one
		// ends at or before off.
		i := sort.Search(len(r.frames), func(i int) bool {
			return r.frames[i].dOff+int64(r.frames[i].d) > off
		})
		buf, err := r.frame(i)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], buf.data[off-r.frames[i].dOff:])
		r.release(buf)
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// frame returns the decompressed content of frame i, from the cache or decompressing it,
// with a reference the caller must release.
func (r *Reader) frame(i int) (*buffer, error) {
	r.mu.Lock()
	if b := r.cachedLocked(i); b != nil {
		r.mu.Unlock()
		return b, nil
	}
	if c, ok := r.inflight[i]; ok {
		c.waiters++
		r.mu.Unlock()
		<-c.done
		return c.buf, c.err
	}
	c := &call{done: make(chan struct{})}
	r.inflight[i] = c
	r.mu.Unlock()

	src := <-r.slots
	r.mu.Lock()
	dst := r.takeLocked(int(r.frames[i].d))
	r.mu.Unlock()
	data, src, err := r.decompress(i, dst, src)
	r.slots <- src

	r.mu.Lock()
	delete(r.inflight, i)
	c.err = err
	if err == nil {
		// Held by the cache, by this reader, and by every waiter.
		c.buf = &buffer{data: data, mem: dst, refs: 2 + c.waiters}
		r.insertLocked(i, c.buf)
	} else {
		r.recycleLocked(dst)
	}
	r.mu.Unlock()
	close(c.done)
	return c.buf, c.err
}

// cachedLocked returns frame i from the cache, with a reference for the caller, and makes it
// the most recently used; nil if it is not cached. r.mu is held.
func (r *Reader) cachedLocked(i int) *buffer {
	for k, c := range r.cache {
		if c.i == i {
			copy(r.cache[1:k+1], r.cache[:k])
			r.cache[0] = c
			c.buf.refs++
			return c.buf
		}
	}
	return nil
}

// insertLocked puts frame i first in the cache (the cache's reference to b is already
// counted), letting go of the least recently used frame if the cache is full. r.mu is held.
func (r *Reader) insertLocked(i int, b *buffer) {
	if len(r.cache) == cacheFrames {
		r.dropLocked(r.cache[cacheFrames-1].buf)
	} else {
		r.cache = append(r.cache, cached{})
	}
	copy(r.cache[1:], r.cache[:len(r.cache)-1])
	r.cache[0] = cached{i: i, buf: b}
}

// release lets go of a reference frame returned.
func (r *Reader) release(b *buffer) {
	r.mu.Lock()
	r.dropLocked(b)
	r.mu.Unlock()
}

// dropLocked lets go of a reference to b; r.mu is held.
func (r *Reader) dropLocked(b *buffer) {
	if b.refs--; b.refs == 0 {
		r.recycleLocked(b.mem)
	}
}

// recycleLocked keeps a buffer no one holds for the next frame, if it is of the reused size;
// r.mu is held. Buffers are made only when none is kept, so there are never more than the
// most frames held at once (the cache's, those being decompressed, and those displaced from
// the cache while a read still copies out of them).
func (r *Reader) recycleLocked(b []byte) {
	if cap(b) == r.bufSize {
		r.free = append(r.free, b[:0])
	}
}

// takeLocked returns an empty buffer with room for n bytes; r.mu is held. A kept buffer serves any
// frame up to the reused size; a new one has that capacity, so that it can serve any frame
// later, except for a small frame (a config, a member's short first frame), which gets one of
// its own size that is not kept, as does a larger one (at most maxFrameSize, in a stream
// another tool wrote).
func (r *Reader) takeLocked(n int) []byte {
	if n > r.bufSize {
		return make([]byte, 0, n)
	}
	if k := len(r.free); k > 0 {
		b := r.free[k-1]
		r.free = r.free[:k-1]
		return b
	}
	if n < r.bufSize/4 {
		return make([]byte, 0, n)
	}
	return make([]byte, 0, r.bufSize)
}

// decompress decompresses frame i into dst, which has room for it, reading the compressed
// frame into src. It returns the decompressed content (dst's start), and src, made or grown
// to the reused size if it had to be, to go back with its slot.
func (r *Reader) decompress(i int, dst, src []byte) ([]byte, []byte, error) {
	f := r.frames[i]
	// Open checked f.c and f.d against maxCompressedFrame and maxFrameSize.
	var in []byte
	if int(f.c) <= r.srcSize {
		if cap(src) < r.srcSize {
			src = make([]byte, r.srcSize)
		}
		in = src[:f.c]
	} else {
		in = make([]byte, f.c) // a frame larger than the reused size, not kept
	}
	if err := readFull(r.ra, in, f.cOff); err != nil {
		return nil, src, fmt.Errorf("zstdseek: frame %d at %d: %w", i, f.cOff, err)
	}
	// With WithDecodeAllCapLimit, DecodeAll fails rather than grow dst past its capacity.
	data, err := r.dec.DecodeAll(in, dst[:0:f.d])
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, src, fmt.Errorf("%w: frame %d at %d: more than the %d decompressed bytes its entry says", ErrBadSeekTable, i, f.cOff, f.d)
		}
		return nil, src, fmt.Errorf("zstdseek: frame %d at %d: %w", i, f.cOff, err)
	}
	if len(data) != int(f.d) {
		return nil, src, fmt.Errorf("%w: frame %d at %d: %d decompressed bytes, its entry says %d", ErrBadSeekTable, i, f.cOff, len(data), f.d)
	}
	return data, src, nil
}

// newSlots returns n decompression slots, their buffers not made yet.
func newSlots(n int) chan []byte {
	c := make(chan []byte, n)
	for range n {
		c <- nil
	}
	return c
}

// Skippable returns the payloads of the skippable frames that have seek table entries
// (decompressed size 0), in file order. Entries of size 0 that are not skippable frames
// (an empty zstd frame) are passed over.
func (r *Reader) Skippable() ([][]byte, error) {
	var out [][]byte
	for i, f := range r.frames {
		if f.d != 0 {
			continue
		}
		var head [skippableHeaderSize]byte
		if err := readFull(r.ra, head[:], f.cOff); err != nil {
			return nil, fmt.Errorf("zstdseek: frame %d at %d: %w", i, f.cOff, err)
		}
		if !isSkippableMagic(binary.LittleEndian.Uint32(head[:])) {
			continue
		}
		l := binary.LittleEndian.Uint32(head[4:])
		if int64(l) != int64(f.c)-skippableHeaderSize {
			return nil, fmt.Errorf("%w: skippable frame %d at %d: length %d, its entry says %d", ErrBadSeekTable, i, f.cOff, l, int64(f.c)-skippableHeaderSize)
		}
		if l > maxSkippableSize {
			return nil, fmt.Errorf("%w: skippable frame %d at %d: %d bytes exceeds %d", ErrBadSeekTable, i, f.cOff, l, maxSkippableSize)
		}
		p := make([]byte, l)
		if err := readFull(r.ra, p, f.cOff+skippableHeaderSize); err != nil {
			return nil, fmt.Errorf("zstdseek: skippable frame %d at %d: %w", i, f.cOff, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// readFull reads len(b) bytes at off; io.ReaderAt may return io.EOF with a full read.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
