package tarfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/darc-dev/darc/internal/zstdseek"
)

// A compressed bundle is a tar compressed as a whole. darc writes zstd in the seekable format
// (see package zstdseek): frames are cut where members start, so that a member can be read by
// decompressing only its own frames, and a skippable frame near the end holds a copy of every
// tar header block (the header view). With it, opening the bundle indexes the tar without
// decompressing anything else: BuildIndex runs over the view, and member data is read from
// the frames. Any zstd decoder skips both skippable frames, so the file is a plain .tar.zst.

// bigMember is the data size from which a member gets frames of its own: reading it then
// decompresses nothing of its neighbours, and reading a neighbour nothing of it.
const bigMember = 256 << 10

// headFrame is the size of a large member's first frame: reading a layer's first bytes, as
// inspect and load do to learn its compression, then decompresses that much, not a whole
// 4 MiB frame.
const headFrame = 64 << 10

// headerViewMagic starts the skippable frame that holds the header view.
const headerViewMagic = "darc header view 1\n"

// maxHeaderView bounds the decompressed header view: 512 bytes per member for half a million
// members.
const maxHeaderView = 256 << 20

// CompressOptions configure NewCompressor.
type CompressOptions struct {
	// Level is the format's own (zstd 1 to 19, gzip 1 to 9); 0 means the format's default.
	Level int
	// PartSize, when positive, splits a Zstd bundle into parts of at most PartSize bytes,
	// each a seekable zstd stream (see zstdseek.WriterOptions); the last holds the header
	// view. NextPart returns the writer of each part after the first.
	PartSize int64
	NextPart func() (io.Writer, error)
}

// NewCompressor returns a writer that compresses the tar written to it into w: Zstd as a
// seekable bundle, Gzip with a block per core, Uncompressed as is. The output depends only
// on the bytes written and the options, not on the number of cores. Close finishes the
// compressed stream but does not close w.
func NewCompressor(w io.Writer, c Compression, o CompressOptions) (io.WriteCloser, error) {
	if o.PartSize > 0 && c != Zstd {
		return nil, fmt.Errorf("cannot split %s output", c)
	}
	level := o.Level
	switch c {
	case Uncompressed:
		return nopCloser{w}, nil
	case Gzip:
		if level == 0 {
			level = pgzip.DefaultCompression
		}
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("gzip level %d: %w", level, err)
		}
		// Fixed blocks, however many cores: pgzip's output depends on the block size.
		if err := zw.SetConcurrency(1<<20, runtime.GOMAXPROCS(0)+1); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		if level < 0 || level > 19 {
			return nil, fmt.Errorf("zstd level %d: expected 1 to 19", level)
		}
		zw, err := zstdseek.NewWriter(w, zstdseek.WriterOptions{Level: level, PartSize: o.PartSize, NextPart: o.NextPart})
		if err != nil {
			return nil, err
		}
		return &bundleWriter{zw: zw}, nil
	}
	return nil, fmt.Errorf("cannot write %s", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// bundleWriter follows the tar written through it, header by header, to cut frames at member
// boundaries and to collect the header view. A member of bigMember bytes or more gets frames
// of its own: a first one of its header and headFrame bytes, then the writer's 4 MiB ones.
// The tar is not checked: what it cannot follow (a bad checksum, a PAX size or sparse record,
// an old GNU sparse member) it stops following, and the bundle gets no header view; the
// compressed bytes are the same either way.
type bundleWriter struct {
	zw *zstdseek.Writer
	// off is the number of tar bytes written.
	off int64
	// blk collects a header block until it is whole.
	blk  [blockSize]byte
	nblk int
	// remain is what is left of the current member's data and padding; keep says it goes
	// into the view (PAX and GNU long-name data); big that the member has frames of its own,
	// the first of which ends after head more bytes.
	remain int64
	keep   bool
	big    bool
	head   int64
	// ended is set at the first zero block: the tar ends there, and the view keeps the rest.
	ended  bool
	lost   bool // the tar could no longer be followed: no view
	view   headerView
	err    error
	closed bool
}

func (b *bundleWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, errors.New("write to a closed compressor")
	}
	n := len(p)
	for len(p) > 0 && b.err == nil {
		switch {
		case b.lost:
			b.err = b.emit(p, false)
			p = nil
		case b.ended:
			b.err = b.emit(p, true)
			p = nil
		case b.remain > 0:
			k := int(min(b.remain, int64(len(p))))
			if b.head > 0 {
				k = int(min(int64(k), b.head))
			}
			b.err = b.emit(p[:k], b.keep)
			b.remain -= int64(k)
			p = p[k:]
			if b.head > 0 && b.err == nil {
				if b.head -= int64(k); b.head == 0 {
					b.err = b.zw.EndFrame()
				}
			}
			if b.remain == 0 && b.big && b.err == nil {
				b.err = b.zw.EndFrame()
				b.big = false
			}
		default:
			k := copy(b.blk[b.nblk:], p)
			b.nblk += k
			p = p[k:]
			if b.nblk == blockSize {
				b.nblk = 0
				b.err = b.header()
			}
		}
	}
	if b.err != nil {
		return 0, b.err
	}
	return n, nil
}

// header handles a whole header block.
func (b *bundleWriter) header() error {
	blk := b.blk[:]
	if bytes.Equal(blk, zeroBlock[:]) {
		b.ended = true
		return b.emit(blk, true)
	}
	size, ok := headerSize(blk)
	typ := blk[156]
	switch {
	case !ok || !isTarHeader(blk) || typ == 'S':
		b.lost = true
		return b.emit(blk, false)
	case isHeaderOnlyType(typ):
		size = 0
	}
	b.remain = (size + blockSize - 1) / blockSize * blockSize
	b.keep = typ == 'x' || typ == 'g' || typ == 'L' || typ == 'K'
	if b.keep && size > 1<<20 {
		b.lost = true // not a header extension darc or docker would write
	}
	if !b.keep && size >= bigMember {
		if err := b.zw.EndFrame(); err != nil {
			return err
		}
		b.big, b.head = true, headFrame
	}
	return b.emit(blk, true)
}

// emit writes p, tar bytes, to the compressor, and keeps them in the view if keep.
func (b *bundleWriter) emit(p []byte, keep bool) error {
	if keep && !b.lost {
		b.view.add(b.off, p)
	}
	b.off += int64(len(p))
	_, err := b.zw.Write(p)
	return err
}

// Close writes the header view, if the tar could be followed to its end, and the seek table.
func (b *bundleWriter) Close() error {
	if b.closed {
		return b.err
	}
	b.closed = true
	if b.err != nil {
		b.zw.Abort() // a failed stream: stop the compressor's goroutines, add nothing
		return b.err
	}
	if b.ended && !b.lost && !b.view.hasPAXSize() {
		b.view.size = b.off
		payload, err := b.view.encode()
		if err == nil {
			err = b.zw.WriteSkippable(payload)
		}
		if err != nil {
			b.err = err
			return err
		}
	}
	b.err = b.zw.Close()
	return b.err
}

var zeroBlock [blockSize]byte

// headerSize decodes a header's size field: octal, or base-256 for members of 8 GiB and more.
func headerSize(blk []byte) (int64, bool) {
	f := blk[124:136]
	if f[0]&0x80 == 0 {
		return parseOctal(f)
	}
	if f[0]&0x40 != 0 {
		return 0, false // negative
	}
	var n int64
	for i, c := range f {
		if i == 0 {
			c &= 0x7f
		}
		if n > (1<<62)>>8 {
			return 0, false
		}
		n = n<<8 | int64(c)
	}
	return n, true
}

// headerView is what a bundle stores of its tar: every header block and header extension,
// and the end of the tar, each at its offset; the member data between them is left out. As an
// io.ReaderAt it reads zeros where data was left out, which is all BuildIndex needs of a tar
// whose members it does not read.
type headerView struct {
	size int64
	segs []viewSegment
	data []byte
}

// viewSegment is a run of kept bytes: data[at:at+n] is the tar at off.
type viewSegment struct {
	off, at, n int64
}

// add keeps p, the tar's bytes at off.
func (v *headerView) add(off int64, p []byte) {
	if k := len(v.segs) - 1; k >= 0 && v.segs[k].off+v.segs[k].n == off {
		v.segs[k].n += int64(len(p))
	} else {
		v.segs = append(v.segs, viewSegment{off: off, at: int64(len(v.data)), n: int64(len(p))})
	}
	v.data = append(v.data, p...)
}

// hasPAXSize reports whether a PAX header sets a size or a sparse map, which the writer did
// not follow: the member's data would not be where the view says.
func (v *headerView) hasPAXSize() bool {
	return bytes.Contains(v.data, []byte(" size=")) || bytes.Contains(v.data, []byte("GNU.sparse"))
}

// encode serializes the view: the magic, then zstd of the size, the segment count, each
// segment as the gap before it and its length (uvarints), and the kept bytes.
func (v *headerView) encode() ([]byte, error) {
	buf := binary.AppendUvarint(nil, uint64(v.size))
	buf = binary.AppendUvarint(buf, uint64(len(v.segs)))
	var end int64
	for _, s := range v.segs {
		buf = binary.AppendUvarint(buf, uint64(s.off-end))
		buf = binary.AppendUvarint(buf, uint64(s.n))
		end = s.off + s.n
	}
	buf = append(buf, v.data...)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(buf, []byte(headerViewMagic)), nil
}

// errBadView is the reason a stored header view is not used.
var errBadView = errors.New("malformed header view")

// decodeHeaderView parses what encode wrote. It checks that the segments are in order, do
// not overlap, lie within the tar and account for the kept bytes exactly.
func decodeHeaderView(payload []byte) (*headerView, error) {
	body, ok := bytes.CutPrefix(payload, []byte(headerViewMagic))
	if !ok {
		return nil, errBadView
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxHeaderView), zstd.WithDecoderMaxWindow(maxZstdWindow))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	buf, err := dec.DecodeAll(body, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadView, err)
	}
	rd := bytes.NewReader(buf)
	size, err1 := binary.ReadUvarint(rd)
	count, err2 := binary.ReadUvarint(rd)
	if err1 != nil || err2 != nil || size > 1<<62 || count > uint64(len(buf)) {
		return nil, errBadView
	}
	v := &headerView{size: int64(size), segs: make([]viewSegment, 0, count)}
	var end, kept int64
	for range count {
		gap, err1 := binary.ReadUvarint(rd)
		n, err2 := binary.ReadUvarint(rd)
		if err1 != nil || err2 != nil || gap > size || n == 0 || n > size || end+int64(gap)+int64(n) > v.size {
			return nil, errBadView
		}
		off := end + int64(gap)
		v.segs = append(v.segs, viewSegment{off: off, at: kept, n: int64(n)})
		end, kept = off+int64(n), kept+int64(n)
	}
	v.data = buf[len(buf)-rd.Len():]
	if int64(len(v.data)) != kept {
		return nil, errBadView
	}
	return v, nil
}

// ReadAt reads the view: kept bytes where it has them, zeros elsewhere.
func (v *headerView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= v.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := v.size - off; int64(n) > rest {
		n = int(rest)
	}
	clear(p[:n])
	i := sort.Search(len(v.segs), func(i int) bool { return v.segs[i].off+v.segs[i].n > off })
	for ; i < len(v.segs) && v.segs[i].off < off+int64(n); i++ {
		s := v.segs[i]
		from, to := max(s.off, off), min(s.off+s.n, off+int64(n))
		copy(p[from-off:to-off], v.data[s.at+from-s.off:s.at+to-s.off])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// mismatch reports the first kept segment whose bytes differ from the tar in r.
func (v *headerView) mismatch(r io.ReaderAt) error {
	var buf []byte
	for _, s := range v.segs {
		buf = append(buf[:0], make([]byte, s.n)...)
		if _, err := r.ReadAt(buf, s.off); err != nil && !(err == io.EOF && s.off+s.n == v.size) {
			return fmt.Errorf("reading tar bytes %d to %d: %w", s.off, s.off+s.n, err)
		}
		if !bytes.Equal(buf, v.data[s.at:s.at+s.n]) {
			return fmt.Errorf("the stored member index disagrees with the tar at bytes %d to %d", s.off, s.off+s.n)
		}
	}
	return nil
}

// openBundle opens the zstd in ra (parts of the given sizes, one after another) for random
// access when it is a seekable bundle. It returns nil, nil for zstd that is not seekable, or
// whose seek table is unusable (after telling o.Warn why): the caller reads it as a stream.
func openBundle(name string, ra io.ReaderAt, sizes []int64, o OpenOptions) (*Reader, error) {
	r, err := bundleReader(name, ra, sizes, o)
	if errors.Is(err, zstdseek.ErrNotSeekable) {
		return nil, nil
	}
	var bad badSeekTable
	if errors.As(err, &bad) {
		if o.Warn != nil {
			o.Warn(fmt.Sprintf("archive %q: %v; reading it as a plain zstd stream", name, bad.err))
		}
		return nil, nil
	}
	return r, err
}

// badSeekTable is a seek table that zstdseek.Open refused.
type badSeekTable struct{ err error }

func (b badSeekTable) Error() string { return b.err.Error() }

// bundleReader reads the seekable bundle in ra, parts of the given sizes: the tar is indexed from the
// header view when the bundle has a usable one, from the frames otherwise, and its members
// are read from the frames that hold them.
func bundleReader(name string, ra io.ReaderAt, sizes []int64, o OpenOptions) (*Reader, error) {
	zr, err := zstdseek.OpenParts(ra, sizes)
	if errors.Is(err, zstdseek.ErrNotSeekable) {
		return nil, err
	}
	if err != nil {
		return nil, badSeekTable{err}
	}
	limits := o.Limits.WithDefaults()
	var ix *Index
	view := storedView(zr)
	if view != nil {
		ix, err = BuildIndex(view, view.size, limits.MaxMembers)
		if err != nil || ix.sparse != nil {
			// A view darc would not write: index the tar itself, which decides.
			ix, view = nil, nil
		} else {
			ix.r = zr
		}
	}
	if ix == nil {
		if ix, err = BuildIndex(zr, zr.Size(), limits.MaxMembers); err != nil {
			return nil, fmt.Errorf("archive %q: %w", name, err)
		}
	}
	r := &Reader{name: name, ix: ix, limits: limits, view: view}
	if err := r.loadImages(); err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	return r, nil
}

// storedView returns the bundle's header view when it has one that describes a tar of the
// bundle's size.
func storedView(zr *zstdseek.Reader) *headerView {
	payloads, err := zr.Skippable()
	if err != nil {
		return nil
	}
	for _, p := range payloads {
		if v, err := decodeHeaderView(p); err == nil && v.size == zr.Size() {
			return v
		}
	}
	return nil
}

// StoredIndexMismatch reports whether the bundle's stored header view disagrees with the tar
// in its frames; it reads every frame that holds a header. It is nil for an archive that was
// not indexed from a stored view.
func (r *Reader) StoredIndexMismatch() error {
	if r.view == nil {
		return nil
	}
	return r.view.mismatch(r.ix.r)
}
