package tarfile

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/zstdseek"
)

// A blob whose size is not known in advance cannot be compressed into a bundle as it arrives:
// its tar header, which holds the size, comes first. Spooling it raw and compressing it when
// its turn comes would leave the cores idle while it arrives and busy after, so a blob of
// bigMember bytes or more is spooled as the bundle will hold it (bundleWriter.spool). Its first
// headFrame bytes, which share a frame with the header, stay raw in memory; the rest of its
// data and its padding are compressed as they arrive, by a spool of the bundle's own zstd
// writer, into the frames the bundle would have cut, and the frames go to the temp file.
// Writing the member then writes the header and the head through the bundle writer and copies
// the frames: the bytes are the same as if the blob had been written through it.

// spooledFrames is a big member's data as a bundle holds it.
type spooledFrames struct {
	owner  *bundleWriter // the only writer whose output the frames fit
	head   []byte        // the first headFrame bytes, raw
	frames zstdseek.Frames
}

// Size is the number of bytes the frames take in the spool file.
func (f *spooledFrames) Size() int64 { return f.frames.Size() }

// spool copies r, a blob of at least bigMember bytes, into a compressed spool, checking size
// and want as SpoolBlob does.
func (b *bundleWriter) spool(r io.Reader, size int64, want digest.Digest, dir string) (*SpooledBlob, error) {
	f, err := createSpoolFile(dir)
	if err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	zw := b.zw.Spool(io.MultiWriter(f, crc))
	split := &headSplitter{head: make([]byte, 0, headFrame), rest: zw}
	got, n, err := copyChecked(split, r, size, want)
	if err == nil {
		_, err = zw.Write(make([]byte, padding(n)))
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err == nil && n < bigMember {
		err = fmt.Errorf("archive: internal error: a blob of %d bytes spooled as frames", n)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	sf := &spooledFrames{owner: b, head: split.head, frames: zw.Frames()}
	return &SpooledBlob{f: f, digest: got, size: n, sum: crc.Sum32(), frames: sf}, nil
}

// headSplitter keeps the first headFrame bytes written to it and passes the rest on.
type headSplitter struct {
	head []byte
	rest io.Writer
}

func (h *headSplitter) Write(p []byte) (int, error) {
	k := min(headFrame-len(h.head), len(p))
	h.head = append(h.head, p[:k]...)
	if k == len(p) {
		return k, nil
	}
	n, err := h.rest.Write(p[k:])
	return k + n, err
}

// writeFrames writes the data of a blob Spool compressed, after its header.
func (w *Writer) writeFrames(s *SpooledBlob) error {
	sf := s.frames
	if err := w.write(sf.head); err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	n, err := w.bundle.appendFrames(io.TeeReader(io.NewSectionReader(s.f, 0, sf.Size()), crc), sf.frames)
	w.off += n
	if err != nil {
		return err
	}
	return s.checkSum(crc.Sum32())
}

// appendFrames writes the rest of a big member, whose header and head were just written, from
// frames a spool of b.zw compressed. It returns the number of tar bytes they hold.
func (b *bundleWriter) appendFrames(r io.Reader, f zstdseek.Frames) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	n := f.DecompressedSize()
	if b.lost || !b.big || b.head != 0 || b.remain != n {
		b.err = errors.New("archive: internal error: spooled frames do not follow a member's head")
		return 0, b.err
	}
	if err := b.zw.AppendFrames(r, f); err != nil {
		b.err = err
		return 0, err
	}
	b.off += n
	b.remain, b.big = 0, false
	return n, nil
}
