package tarfile

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
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
	// bzip2: "BZh", a block size digit, then the block magic (pi) or the end-of-stream
	// magic (sqrt(pi)) of an empty stream.
	bzipBlockMagic = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzipEndMagic   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// DetectCompression identifies the format of data that starts with head. A head that is a
// valid tar header block is uncompressed whatever its first bytes say, so a tar whose first
// member is named "BZh…" is not mistaken for bzip2.
func DetectCompression(head []byte) Compression {
	if len(head) >= 512 && isTarHeader(head[:512]) {
		return Uncompressed
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case bytes.HasPrefix(head, xzMagic):
		return Xz
	case len(head) >= 10 && bytes.HasPrefix(head, []byte("BZh")) && head[3] >= '1' && head[3] <= '9' &&
		(bytes.Equal(head[4:10], bzipBlockMagic) || bytes.Equal(head[4:10], bzipEndMagic)):
		return Bzip2
	}
	return Uncompressed
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

// spoolInput copies r (decompressing it when its magic bytes say so) into an anonymous temp file
// in dir ("" means os.TempDir()) and returns that file positioned anywhere, with its size.
// The file is unlinked as soon as it is created, so nothing is left on disk once it is
// closed, even if the process dies. maxSize bounds the bytes written (0: no bound).
func spoolInput(r io.Reader, dir string, maxSize int64) (f *os.File, size int64, c Compression, err error) {
	in := &errRecorder{r: r}
	br := bufio.NewReaderSize(in, 1<<20)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, 0, 0, fmt.Errorf("reading input: %w", err)
	}
	c = DetectCompression(head)
	src, closeDec, err := Decompress(br, c)
	if err != nil {
		return nil, 0, c, fmt.Errorf("%w: bad %s data: %w", ErrNotDockerArchive, c, err)
	}
	defer closeDec()
	if dir == "" {
		dir = os.TempDir()
	}
	f, err = os.CreateTemp(dir, "darc-spool-*.tar")
	if err != nil {
		return nil, 0, c, fmt.Errorf("creating spool file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, 0, c, fmt.Errorf("unlinking spool file: %w", err)
	}
	if maxSize > 0 {
		src = &limitedReader{r: src, n: maxSize}
	}
	size, err = io.Copy(f, src)
	if err != nil {
		_ = f.Close()
		if errors.Is(err, errLimit) {
			return nil, 0, c, fmt.Errorf("%w: input expands past %d bytes", ErrTooLarge, maxSize)
		}
		if c != Uncompressed && in.err == nil {
			// The decompressor's complaint about the data (truncated, corrupt, bad checksum),
			// not a failure to read the input.
			return nil, 0, c, fmt.Errorf("%w: bad %s data: %w", ErrNotDockerArchive, c, err)
		}
		return nil, 0, c, fmt.Errorf("spooling %s input: %w", c, err)
	}
	return f, size, c, nil
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
