package tarfile

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// outFile is an output the Writer can patch and cut back: in practice a regular *os.File.
// The archive starts at the file's position when NewWriter is called.
type outFile interface {
	io.Writer
	io.WriterAt
	io.Seeker
	Truncate(size int64) error
}

// Header values of every member the Writer writes. Fixed values make the output depend on
// nothing but the content: no owner, no umask, no clock.
const (
	fileMode    = 0o444 // as containers/image writes: the archive is not meant to be edited in place
	symlinkMode = 0o777
	maxNameLen  = 100 // the USTAR name field; every name darc writes fits
	maxOctal11  = 1<<33 - 1
	copyBufSize = 1 << 20
)

// WriterOptions configure NewWriter.
type WriterOptions struct {
	// ModTime is the modification time of every member (whole seconds, from 1970 to 2242).
	// The zero value means the Unix epoch.
	ModTime time.Time
}

// Writer writes a tar stream member by member with fixed header values (mode 0444, uid and
// gid 0, one modification time, no user or group names), one USTAR header block per member.
//
// On an outFile it can stream a blob of unknown size and patch the header afterwards, and cut a
// member back off the end. On any other io.Writer a blob must be streamed with its size and
// digest known up front (spool it with SpoolBlob otherwise).
//
// A failure that leaves the output in an unknown state (a failed write to a stream, a cut-back
// that fails) is sticky: every later call returns it. A failure that was cut back cleanly
// (a source that errors, a digest mismatch, a failed write to an outFile) is returned and the
// Writer stays usable.
//
// A Writer is not safe for concurrent use, except Spool, which may be called from any
// goroutine.
type Writer struct {
	out    io.Writer
	file   outFile       // nil when the output cannot seek
	bundle *bundleWriter // out, when it is a seekable zstd bundle: Spool then compresses
	base   int64         // position of the archive's first byte in file
	off    int64         // bytes of archive written so far
	mtime  int64
	err    error
	bufs   [3][]byte // copyData's buffers, allocated on first use
}

// NewWriter returns a Writer to w. w is used as an outFile when it implements one and can seek
// (a regular file, not a pipe).
func NewWriter(w io.Writer, o WriterOptions) (*Writer, error) {
	mtime := int64(0)
	if !o.ModTime.IsZero() {
		mtime = o.ModTime.Unix()
	}
	if mtime < 0 || mtime > maxOctal11 {
		return nil, fmt.Errorf("archive: modification time %s cannot be stored in a tar header", o.ModTime)
	}
	tw := &Writer{out: w, mtime: mtime}
	tw.bundle, _ = w.(*bundleWriter)
	if f, ok := w.(outFile); ok {
		if pos, err := f.Seek(0, io.SeekCurrent); err == nil {
			tw.file, tw.base = f, pos
		}
	}
	return tw, nil
}

// Seekable reports whether the output is an outFile that headers can be patched in and members
// cut back from.
func (w *Writer) Seekable() bool { return w.file != nil }

// Offset is the number of bytes written so far: where the next member's header will start.
func (w *Writer) Offset() int64 { return w.off }

// Err returns the sticky error, if any.
func (w *Writer) Err() error { return w.err }

// WrittenMember describes a member the Writer wrote.
type WrittenMember struct {
	Name         string
	Digest       digest.Digest
	Size         int64
	HeaderOffset int64 // where its header starts; CutBack(HeaderOffset) removes it
}

// WriteFile writes a regular member holding data.
func (w *Writer) WriteFile(name string, data []byte) (WrittenMember, error) {
	if w.err != nil {
		return WrittenMember{}, w.err
	}
	hdr, err := header(name, '0', int64(len(data)), "", w.mtime)
	if err != nil {
		return WrittenMember{}, err
	}
	start := w.off
	buf := make([]byte, 0, blockSize+len(data)+blockSize)
	buf = append(buf, hdr...)
	buf = append(buf, data...)
	buf = append(buf, make([]byte, padding(int64(len(data))))...)
	if err := w.write(buf); err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	return WrittenMember{Name: name, Digest: digest.FromBytes(data), Size: int64(len(data)), HeaderOffset: start}, nil
}

// WriteSymlink writes a symbolic link member.
func (w *Writer) WriteSymlink(name, target string) (WrittenMember, error) {
	if w.err != nil {
		return WrittenMember{}, w.err
	}
	hdr, err := header(name, '2', 0, target, w.mtime)
	if err != nil {
		return WrittenMember{}, err
	}
	start := w.off
	if err := w.write(hdr); err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	return WrittenMember{Name: name, HeaderOffset: start}, nil
}

// StreamBlob writes the bytes of r as a regular member, hashing and counting them on the way.
// size is the declared size or -1, want the declared digest or "". The member is named
// name(d), d being want or, when want is empty, the sha256 digest of the content.
//
// With size or want unknown the output must be Seekable: the header is written with a
// placeholder and patched once the content is known. A size or digest that does not match
// what was declared is ErrSizeMismatch or ErrDigestMismatch; then, as for a read error, the
// partial member is cut back off an outFile (on a stream the error is sticky).
func (w *Writer) StreamBlob(r io.Reader, size int64, want digest.Digest, name func(digest.Digest) string) (WrittenMember, error) {
	if w.err != nil {
		return WrittenMember{}, w.err
	}
	known := size >= 0 && want != ""
	if !known && w.file == nil {
		return WrittenMember{}, errors.New("archive: a blob of unknown size or digest needs a seekable output; spool it first")
	}
	h, err := hasher(want)
	if err != nil {
		return WrittenMember{}, err
	}
	start := w.off
	finalName := ""
	var hdr []byte
	if known {
		finalName = name(want)
		hdr, err = header(finalName, '0', size, "", w.mtime)
	} else {
		hdr, err = header("darc-incomplete-member", '0', 0, "", w.mtime)
	}
	if err != nil {
		return WrittenMember{}, err
	}
	if err := w.write(hdr); err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	n, err := w.copyData(r, h, size)
	if err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	got := digest.NewDigest(h.alg, h)
	if want != "" && got != want {
		return WrittenMember{}, w.failed(start, fmt.Errorf("%w: content is %s, expected %s", ErrDigestMismatch, got, want))
	}
	if !known {
		finalName = name(got)
		hdr, err = header(finalName, '0', n, "", w.mtime)
		if err != nil {
			return WrittenMember{}, w.failed(start, err)
		}
		if _, err := w.file.WriteAt(hdr, w.base+start); err != nil {
			return WrittenMember{}, w.failed(start, fmt.Errorf("patching tar header: %w", err))
		}
	}
	if err := w.write(make([]byte, padding(n))); err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	return WrittenMember{Name: finalName, Digest: got, Size: n, HeaderOffset: start}, nil
}

// copyData copies r to the output, hashing it with h, and checks its length against size
// (-1: unknown). Three goroutines share the work: this one reads the next chunk from r while
// a second one hashes the chunks read before and a third one writes them out. Each stage
// costs about the same (sha256 and the write system call each run near 1 GB/s), and reading
// is rarely cheap either: through copy.Image and a verifying image source it hashes every
// byte twice more, or decompresses. On a machine with more than one core the stages overlap
// instead of adding up. Nothing of w but its output is touched by the writing goroutine,
// and both helpers have finished when copyData returns.
func (w *Writer) copyData(r io.Reader, h *digester, size int64) (int64, error) {
	for i := range w.bufs {
		if w.bufs[i] == nil {
			w.bufs[i] = make([]byte, copyBufSize)
		}
	}
	free := make(chan []byte, len(w.bufs))
	for _, b := range w.bufs {
		free <- b
	}
	// Both helpers take the chunks in the order they were read. The hasher says when it is
	// done with each; the writer, done with the same chunk, waits for that word before it
	// gives the buffer back.
	toHash := make(chan []byte, len(w.bufs))
	toWrite := make(chan []byte, len(w.bufs))
	hashed := make(chan struct{}, len(w.bufs))
	var werr error                // the writer goroutine's first error; read after wg.Wait
	failed := make(chan struct{}) // closed on werr
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for chunk := range toHash {
			h.Write(chunk)
			hashed <- struct{}{}
		}
	}()
	go func() {
		defer wg.Done()
		for chunk := range toWrite {
			if werr == nil {
				if werr = w.write(chunk); werr != nil {
					close(failed)
				}
			}
			<-hashed
			free <- chunk[:cap(chunk)]
		}
	}()
	finish := func(n int64, err error) (int64, error) {
		close(toHash)
		close(toWrite)
		wg.Wait()
		if werr != nil {
			return n, werr // the data did not all reach the output: that is what matters
		}
		return n, err
	}

	var n int64
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-failed:
			return finish(n, nil)
		}
		chunk := buf
		if size >= 0 && size-n < int64(len(chunk)) {
			// Read one byte past the declared end to notice a longer stream.
			chunk = chunk[:size-n+1]
		}
		m, rerr := r.Read(chunk)
		if m > 0 {
			if size >= 0 && n+int64(m) > size {
				free <- buf
				return finish(n, fmt.Errorf("%w: more than the declared %d bytes", ErrSizeMismatch, size))
			}
			toHash <- chunk[:m]
			toWrite <- chunk[:m]
			n += int64(m)
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return finish(n, fmt.Errorf("reading blob: %w", rerr))
		}
	}
	if size >= 0 && n != size {
		return finish(n, fmt.Errorf("%w: %d bytes, declared %d", ErrSizeMismatch, n, size))
	}
	return finish(n, nil)
}

// WriteSpooled writes a spooled blob as a regular member. A blob spooled by Spool must be
// written by the Writer that spooled it.
func (w *Writer) WriteSpooled(name string, s *SpooledBlob) (WrittenMember, error) {
	if w.err != nil {
		return WrittenMember{}, w.err
	}
	if s.frames != nil && s.frames.owner != w.bundle {
		return WrittenMember{}, errors.New("archive: internal error: a blob spooled for another Writer's bundle")
	}
	hdr, err := header(name, '0', s.size, "", w.mtime)
	if err != nil {
		return WrittenMember{}, err
	}
	start := w.off
	if err := w.write(hdr); err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	if s.frames != nil {
		if err := w.writeFrames(s); err != nil {
			return WrittenMember{}, w.failed(start, err)
		}
		return WrittenMember{Name: name, Digest: s.digest, Size: s.size, HeaderOffset: start}, nil
	}
	crc := crc32.New(castagnoli)
	n, err := w.copyData(io.NewSectionReader(s.f, 0, s.size), &digester{Hash: crc}, s.size)
	if err == nil {
		err = s.checkSum(crc.Sum32())
	}
	if err == nil {
		err = w.write(make([]byte, padding(n)))
	}
	if err != nil {
		return WrittenMember{}, w.failed(start, err)
	}
	return WrittenMember{Name: name, Digest: s.digest, Size: s.size, HeaderOffset: start}, nil
}

// CutBack removes everything from offset off (a member's HeaderOffset) to the end. It needs
// a Seekable output; a failure is sticky.
func (w *Writer) CutBack(off int64) error {
	if w.err != nil {
		return w.err
	}
	if w.file == nil {
		w.err = errors.New("archive: cannot cut back a member written to a stream")
		return w.err
	}
	if off < 0 || off > w.off {
		return fmt.Errorf("archive: cut back to %d, outside the %d bytes written", off, w.off)
	}
	if err := w.cutBack(off); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *Writer) cutBack(off int64) error {
	if err := w.file.Truncate(w.base + off); err != nil {
		return fmt.Errorf("archive: cutting back to offset %d: %w", off, err)
	}
	if _, err := w.file.Seek(w.base+off, io.SeekStart); err != nil {
		return fmt.Errorf("archive: cutting back to offset %d: %w", off, err)
	}
	w.off = off
	return nil
}

// Close writes the end-of-archive marker (two zero blocks). It does not close the output.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	start := w.off
	if err := w.write(make([]byte, 2*blockSize)); err != nil {
		return w.failed(start, err)
	}
	return nil
}

func (w *Writer) write(p []byte) error {
	n, err := w.out.Write(p)
	w.off += int64(n)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// failed handles an error of the member that started at start: it is cut back off an outFile,
// and the error returned. On a stream, or when the cut-back fails, the error becomes sticky.
func (w *Writer) failed(start int64, err error) error {
	if w.off == start {
		return err // nothing of the member was written
	}
	if w.file == nil {
		w.err = fmt.Errorf("archive: output stream left with a partial member: %w", err)
		return w.err
	}
	if cerr := w.cutBack(start); cerr != nil {
		w.err = errors.Join(err, cerr)
		return w.err
	}
	return err
}

// SpooledBlob is a blob copied to an unlinked temp file, hashed and checked; Close releases it.
type SpooledBlob struct {
	f      *os.File
	digest digest.Digest
	size   int64
	sum    uint32 // CRC-32C of f's bytes as they were spooled
	// frames, for a blob Spool compressed, is what f holds; see bundle_spool.go.
	frames *spooledFrames
}

// Digest is the blob's digest: the declared one, checked, or the sha256 of the content.
func (s *SpooledBlob) Digest() digest.Digest { return s.digest }

// Size is the blob's size.
func (s *SpooledBlob) Size() int64 { return s.size }

// castagnoli is the CRC-32C table. A spool file is checksummed as it is written and again
// as it is copied out, which catches a file that changed in between (a disk error, someone
// else's write) at a fraction of the cost of hashing it for its digest again.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkSum reports a spool file whose bytes, as just copied out, have another checksum, sum,
// than when they were spooled.
func (s *SpooledBlob) checkSum(sum uint32) error {
	if sum != s.sum {
		return fmt.Errorf("%w: spooled copy of %s changed", ErrDigestMismatch, s.digest)
	}
	return nil
}

// Stored is the number of bytes in the temp file: the size, or less for a compressed spool.
func (s *SpooledBlob) Stored() int64 {
	if s.frames != nil {
		return s.frames.Size()
	}
	return s.size
}

// Close removes the spooled copy. It is idempotent.
func (s *SpooledBlob) Close() error {
	if s == nil || s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	return f.Close()
}

// SpoolBlob copies r into an unlinked temp file in dir ("" means os.TempDir()), hashing and
// counting it, and checks size (-1: unknown) and want ("": unknown) as StreamBlob does.
// Nothing is left on disk once the result is closed, or on error.
func SpoolBlob(r io.Reader, size int64, want digest.Digest, dir string) (*SpooledBlob, error) {
	f, err := createSpoolFile(dir)
	if err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	got, n, err := copyChecked(io.MultiWriter(f, crc), r, size, want)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &SpooledBlob{f: f, digest: got, size: n, sum: crc.Sum32()}, nil
}

// Spool is SpoolBlob for this Writer's output: for a seekable zstd bundle, a blob of
// bigMember bytes or more is spooled as the bundle will hold it, compressed as it arrives, on
// all cores, so that WriteSpooled only copies its frames. It may be called from any goroutine,
// concurrently with the Writer's other methods.
func (w *Writer) Spool(r io.Reader, size int64, want digest.Digest, dir string) (*SpooledBlob, error) {
	if w.bundle == nil || (size >= 0 && size < bigMember) {
		return SpoolBlob(r, size, want, dir)
	}
	// Whether the member gets frames of its own depends on its size: read far enough to know.
	prefix := make([]byte, bigMember)
	n, err := io.ReadFull(r, prefix)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return SpoolBlob(bytes.NewReader(prefix[:n]), size, want, dir)
	case err != nil:
		return nil, fmt.Errorf("reading blob: %w", err)
	}
	return w.bundle.spool(io.MultiReader(bytes.NewReader(prefix), r), size, want, dir)
}

// createSpoolFile creates an unlinked temp file in dir ("" means os.TempDir()).
func createSpoolFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "darc-blob-*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unlinking spool file: %w", err)
	}
	return f, nil
}

// copyChecked copies r to out with copyData and checks size and want as StreamBlob does. It
// returns the content's digest (want, or the sha256 when want is empty) and size.
func copyChecked(out io.Writer, r io.Reader, size int64, want digest.Digest) (digest.Digest, int64, error) {
	h, err := hasher(want)
	if err != nil {
		return "", 0, err
	}
	n, err := (&Writer{out: out}).copyData(r, h, size)
	if err != nil {
		return "", 0, err
	}
	got := digest.NewDigest(h.alg, h)
	if want != "" && got != want {
		return "", 0, fmt.Errorf("%w: content is %s, expected %s", ErrDigestMismatch, got, want)
	}
	return got, n, nil
}

// digester is a hash.Hash with the algorithm it computes.
type digester struct {
	hash.Hash
	alg digest.Algorithm
}

// hasher returns the hash for want's algorithm, sha256 when want is empty.
func hasher(want digest.Digest) (*digester, error) {
	alg := digest.Canonical
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("%w: declared digest %q: %w", ErrInvalidManifest, want, err)
		}
		alg = want.Algorithm()
	}
	return &digester{Hash: alg.Hash(), alg: alg}, nil
}

// padding is the number of zero bytes that follow n bytes of data to fill the last block.
func padding(n int64) int64 { return (blockSize - n%blockSize) % blockSize }

// header encodes one USTAR header block. The size is written in octal up to 8 GiB - 1 and
// in base-256 above that, with GNU magic: Go's archive/tar, GNU tar, bsdtar and Python's
// tarfile all read that form.
func header(name string, typ byte, size int64, linkname string, mtime int64) ([]byte, error) {
	if name == "" || len(name) > maxNameLen || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("archive: member name %q: must be 1 to %d bytes without NUL", name, maxNameLen)
	}
	if len(linkname) > maxNameLen || strings.IndexByte(linkname, 0) >= 0 {
		return nil, fmt.Errorf("archive: link target %q: must be at most %d bytes without NUL", linkname, maxNameLen)
	}
	if size < 0 {
		return nil, fmt.Errorf("archive: member %q: negative size", name)
	}
	b := make([]byte, blockSize)
	copy(b[0:100], name)
	mode := int64(fileMode)
	if typ == '2' {
		mode = symlinkMode
	}
	putOctal(b[100:108], mode)
	putOctal(b[108:116], 0) // uid
	putOctal(b[116:124], 0) // gid
	gnu := size > maxOctal11
	if gnu {
		putBase256(b[124:136], size)
	} else {
		putOctal(b[124:136], size)
	}
	putOctal(b[136:148], mtime)
	b[156] = typ
	copy(b[157:257], linkname)
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
		putOctal(b[329:337], 0) // devmajor
		putOctal(b[337:345], 0) // devminor
	}
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	putOctal(b[148:155], sum)
	b[155] = ' '
	return b, nil
}

// putOctal writes v as zero-padded octal digits filling all but the last byte of f, which is
// NUL. v always fits: callers check the ranges.
func putOctal(f []byte, v int64) {
	for i := len(f) - 2; i >= 0; i-- {
		f[i] = byte('0' + v&7)
		v >>= 3
	}
	f[len(f)-1] = 0
}

// putBase256 writes v in the GNU base-256 form: a marker bit, then big-endian binary.
func putBase256(f []byte, v int64) {
	for i := len(f) - 1; i > 0; i-- {
		f[i] = byte(v)
		v >>= 8
	}
	f[0] = 0x80
}
