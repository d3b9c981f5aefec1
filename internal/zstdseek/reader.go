package zstdseek

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// cacheFrames is how many decompressed frames a Reader keeps: enough for a few readers
// reading sequentially at once to each keep theirs.
const cacheFrames = 8

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
// frame decompress it once.
type Reader struct {
	ra     io.ReaderAt
	frames []frame // in file order
	size   int64   // decompressed size
	dec    *zstd.Decoder

	mu       sync.Mutex
	cache    []cached      // most recently used first; guarded by mu
	inflight map[int]*call // frames being decompressed; guarded by mu
}

// frame is a seek table entry with its offsets.
type frame struct {
	cOff, dOff int64
	c, d       uint32
}

type cached struct {
	i    int
	data []byte // never modified once cached
}

// call is one decompression that concurrent readers of the same frame wait for.
type call struct {
	done chan struct{}
	data []byte
	err  error
}

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
	return &Reader{
		ra:       r,
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
		data, err := r.frame(i)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], data[off-r.frames[i].dOff:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// frame returns the decompressed content of frame i, from the cache or decompressing it.
func (r *Reader) frame(i int) ([]byte, error) {
	r.mu.Lock()
	for k, c := range r.cache {
		if c.i == i {
			copy(r.cache[1:k+1], r.cache[:k])
			r.cache[0] = c
			r.mu.Unlock()
			return c.data, nil
		}
	}
	if c, ok := r.inflight[i]; ok {
		r.mu.Unlock()
		<-c.done
		return c.data, c.err
	}
	c := &call{done: make(chan struct{})}
	r.inflight[i] = c
	r.mu.Unlock()

	c.data, c.err = r.decompress(i)

	r.mu.Lock()
	delete(r.inflight, i)
	if c.err == nil {
		if len(r.cache) < cacheFrames {
			r.cache = append(r.cache, cached{})
		}
		copy(r.cache[1:], r.cache[:len(r.cache)-1])
		r.cache[0] = cached{i: i, data: c.data}
	}
	r.mu.Unlock()
	close(c.done)
	return c.data, c.err
}

func (r *Reader) decompress(i int) ([]byte, error) {
	f := r.frames[i]
	// Open checked f.c and f.d against maxCompressedFrame and maxFrameSize.
	src := make([]byte, f.c)
	if err := readFull(r.ra, src, f.cOff); err != nil {
		return nil, fmt.Errorf("zstdseek: frame %d at %d: %w", i, f.cOff, err)
	}
	// With WithDecodeAllCapLimit, DecodeAll fails rather than grow dst past f.d.
	data, err := r.dec.DecodeAll(src, make([]byte, 0, f.d))
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, fmt.Errorf("%w: frame %d at %d: more than the %d decompressed bytes its entry says", ErrBadSeekTable, i, f.cOff, f.d)
		}
		return nil, fmt.Errorf("zstdseek: frame %d at %d: %w", i, f.cOff, err)
	}
	if len(data) != int(f.d) {
		return nil, fmt.Errorf("%w: frame %d at %d: %d decompressed bytes, its entry says %d", ErrBadSeekTable, i, f.cOff, len(data), f.d)
	}
	return data, nil
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
