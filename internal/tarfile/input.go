package tarfile

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression is a whole-stream (or member) compression format.
type Compression int

// Compression formats recognized from magic bytes.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
	Xz
	Bzip2
)

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Xz:
		return "xz"
	case Bzip2:
		return "bzip2"
	}
	return "none"
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	// A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, little-endian, then a 4-byte
	// length): pzstd starts its output with one, and zstd decoders skip it.
	zstdSkippableMagic = []byte{0x2a, 0x4d, 0x18}
	// bzip2: "BZh", a block size digit, then the block magic (pi) or the end-of-stream
	// magic (sqrt(pi)) of an empty stream.
	bzipBlockMagic = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzipEndMagic   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// DetectCompression identifies the format of data that starts with head. A head that is a
// valid tar header block is uncompressed whatever its first bytes say, so a tar whose first
// member is named "BZh…" is not mistaken for bzip2. zstd data may start with a skippable
// frame (see StartsWithSkippableFrame), as Docker's own detection allows.
func DetectCompression(head []byte) Compression {
	if len(head) >= 512 && isTarHeader(head[:512]) {
		return Uncompressed
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic), StartsWithSkippableFrame(head):
		return Zstd
	case bytes.HasPrefix(head, xzMagic):
		return Xz
	case len(head) >= 10 && bytes.HasPrefix(head, []byte("BZh")) && head[3] >= '1' && head[3] <= '9' &&
		(bytes.Equal(head[4:10], bzipBlockMagic) || bytes.Equal(head[4:10], bzipEndMagic)):
		return Bzip2
	}
	return Uncompressed
}

// StartsWithSkippableFrame reports whether head starts with a zstd skippable frame header
// (magic and length): zstd data that other detectors, containers/image's among them, do not
// recognize as zstd.
func StartsWithSkippableFrame(head []byte) bool {
	return len(head) >= 8 && head[0]&0xf0 == 0x50 && bytes.Equal(head[1:4], zstdSkippableMagic)
}

// isTarHeader reports whether block carries a valid tar header checksum.
func isTarHeader(block []byte) bool {
	field := bytes.TrimRight(bytes.TrimLeft(block[148:156], " "), " \x00")
	// ParseUint, as archive/tar uses: no sign, so a negative signed sum never matches.
	want, err := strconv.ParseUint(string(field), 8, 64)
	if err != nil || len(field) == 0 {
		return false
	}
	var unsigned, signed int64
	for i, b := range block {
		if i >= 148 && i < 156 {
			b = ' '
		}
		unsigned += int64(b)
		signed += int64(int8(b))
	}
	return int64(want) == unsigned || int64(want) == signed
}

// maxZstdWindow is the largest zstd window accepted: what zstd(1) decodes without --memory.
// The decoder allocates the window a frame header asks for, so without this bound a 14-byte
// input would cost 512 MiB.
const maxZstdWindow = 128 << 20

// Decompress wraps r in a decompressor for c. The returned closer releases decoder resources.
func Decompress(r io.Reader, c Compression) (io.Reader, func(), error) {
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { _ = zr.Close() }, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case Xz:
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {}, nil
	case Bzip2:
		return bzip2.NewReader(r), func() {}, nil
	}
	return r, func() {}, nil
}

// errLimit is returned by limitedReader past its limit.
var errLimit = errors.New("limit")

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte tells "exactly at the limit" from "past it".
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, errLimit
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// errRecorder keeps the first error of the input itself (io.EOF aside), so that a failure to
// read can be told from a decompressor's complaint about the data.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// spooled is what spoolInput made of its input.
type spooled struct {
	f     *os.File // the tar, positioned anywhere
	size  int64
	c     Compression // of the input
	trail Trailer
}

// spoolInput copies the tar in r (decompressing it when its magic bytes say so) into an
// anonymous temp file in dir ("" means os.TempDir()). The file is unlinked as soon as it is
// created, so nothing is left on disk once it is closed, even if the process dies. maxSize
// bounds the bytes written (0: no bound).
//
// Only the tar is written: the copy stops where archive/tar (and so docker load) sees the
// tar end (see tarEnd), and what follows is read up to trailLimit bytes to describe it (see
// Trailer), not written. A tar that is malformed ends the copy where it goes wrong: indexing
// the file then reports the same defect.
func spoolInput(r io.Reader, dir string, maxSize int64) (*spooled, error) {
	in := &errRecorder{r: r}
	br := bufio.NewReaderSize(in, 1<<20)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("reading input: %w", err)
	}
	c := DetectCompression(head)
	src, closeDec, err := Decompress(br, c)
	if err != nil {
		return nil, fmt.Errorf("%w: bad %s data: %w", ErrNotDockerArchive, c, err)
	}
	defer closeDec()
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "darc-spool-*.tar")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	succeeded := false
	defer func() {
		if !succeeded {
			_ = f.Close()
		}
	}()
	if err := os.Remove(f.Name()); err != nil {
		return nil, fmt.Errorf("unlinking spool file: %w", err)
	}
	dec := &errRecorder{r: src}
	var data io.Reader = dec
	if maxSize > 0 {
		data = &limitedReader{r: data, n: maxSize}
	}
	out := &spoolWriter{w: bufio.NewWriterSize(f, 1<<20)}
	size, err := tarEnd(io.TeeReader(data, out))
	var trail Trailer
	if err == nil {
		// Not data: the trailer is not spooled, so the spool limit does not apply to it.
		trail, err = readTrailer(dec)
	}
	if err == nil {
		err = out.w.Flush()
	}
	if err != nil {
		switch {
		case out.err != nil:
			return nil, fmt.Errorf("writing spool file: %w", out.err)
		case errors.Is(err, errLimit):
			return nil, fmt.Errorf("%w: input expands past %d bytes", ErrTooLarge, maxSize)
		case in.err != nil:
			return nil, fmt.Errorf("spooling %s input: %w", c, in.err)
		case c != Uncompressed && dec.err != nil:
			// The decompressor's complaint about the data (truncated, corrupt, bad checksum),
			// not a failure to read the input.
			return nil, fmt.Errorf("%w: bad %s data: %w", ErrNotDockerArchive, c, dec.err)
		}
		return nil, fmt.Errorf("spooling %s input: %w", c, err)
	}
	succeeded = true
	return &spooled{f: f, size: size, c: c, trail: trail}, nil
}

// spoolWriter keeps the first error of writing the spool file, so that it can be told from
// an error of the input.
type spoolWriter struct {
	w   *bufio.Writer
	err error
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// tarEnd reads the tar in r up to where it ends: the end-of-archive blocks, or the end of the
// input at a header boundary, as archive/tar sees it. It reads nothing past that and returns
// how many bytes it read. A malformed tar ends where it goes wrong, without an error: the
// index of what was read reports the defect (memberStream decodes headers as BuildIndex
// does). Errors of r itself are returned.
func tarEnd(r io.Reader) (int64, error) {
	src := &errRecorder{r: r}
	ms := newMemberStream(src, 0)
	for {
		_, err := ms.Next()
		if err == io.EOF {
			return ms.Offset(), nil
		}
		if err != nil {
			if src.err != nil {
				return ms.Offset(), src.err
			}
			return ms.Offset(), nil
		}
	}
}

// trailLimit is how much of the input past the end of the tar is read to describe it. tar(1)
// pads an archive to a whole record (10 KiB by default, 1 MiB at most with -b 2048), which
// this covers, so a compressed stream's trailer is still checked. Docker reads the rest and
// ignores it; reading it would cost darc time (and, with a compressed input, decompressing
// what may be a bomb) for nothing.
const trailLimit = 1 << 20

// Trailer describes what follows the end of the tar in an archive's input: what docker load
// ignores.
type Trailer struct {
	// Read is how many bytes past the end of the tar were read: all of them unless More.
	Read int64
	// More says the input goes on past trailLimit bytes after the tar; the rest was not read.
	More bool
	// NonZero says a byte that was read is not zero: data, not padding.
	NonZero bool
}

// readTrailer reads r to its end, but no more than trailLimit bytes, and describes them.
func readTrailer(r io.Reader) (Trailer, error) {
	var t Trailer
	buf := make([]byte, 64<<10)
	for t.Read <= trailLimit {
		n, err := r.Read(buf[:min(int64(len(buf)), trailLimit+1-t.Read)])
		t.Read += int64(n)
		if !t.NonZero && slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			t.NonZero = true
		}
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return t, err
		}
	}
	t.Read, t.More = trailLimit, true
	return t, nil
}

// decompressStream returns the content of r, decompressed on the fly when its first bytes say
// it is compressed (see DetectCompression), and the format found: what spoolInput writes to its
// file, for a reader that reads it once instead. Nothing is buffered beyond a read-ahead
// window. The returned function releases the decompressor.
func decompressStream(r io.Reader) (io.Reader, Compression, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, 0, nil, fmt.Errorf("reading input: %w", err)
	}
	c := DetectCompression(head)
	src, closeDec, err := Decompress(br, c)
	if err != nil {
		return nil, c, nil, fmt.Errorf("%w: bad %s data: %w", ErrNotDockerArchive, c, err)
	}
	return src, c, closeDec, nil
}
