package tarfile

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// A streamed archive is read once, front to back: members that look like metadata (and tiny
// ones) are kept in memory, every other regular member is hashed and handed to a forwarding
// function as it passes, and the images are worked out at the end from what was kept and what
// was learned. Nothing is written to disk.

// keepAlways is the size up to which a member is kept in memory whatever it holds: VERSION
// files, oci-layout, empty layers. Keeping them costs less than forwarding each one.
const keepAlways = 1 << 10

// streamMember is one member of a tar read front to back by a memberStream.
type streamMember struct {
	Member
	// Body reads the member's data: Size bytes for a regular file, nothing for other types.
	// It is valid until the next call to Next.
	Body io.Reader
}

// memberStream reads the members of a tar front to back, once: the streaming counterpart of
// BuildIndex, with the same header decoding (plain headers directly, archive/tar from the
// first header that needs it on), the same normalization (names cleaned with cleanName, links
// and directories of size 0), the same placing and recording of names that climb out of the
// root, the same skipping of PAX global headers and of the root, the same member limit; PAX
// sparse members are read expanded, as BuildIndex serves them. Offsets are positions in the
// (decompressed) tar stream, as BuildIndex gives them for a file.
type memberStream struct {
	cr         *countingReader
	tr         *tar.Reader // nil while plain headers are decoded directly
	body       exactReader
	pad        int64 // padding after the current body, on the direct path
	blk        [blockSize]byte
	maxMembers int
	n          int
	end        int64 // where the data of the previous member ended
	sparse     bool  // the previous member is sparse: end is known once its body is read
	insecure   []string
	skipBuf    []byte
}

// skip reads and drops n bytes of data in large reads: io.Discard would read 8 KiB at a
// time, which shows when what is read is also copied (spoolInput's tee).
func (s *memberStream) skip(n int64) error {
	if n == 0 {
		return nil
	}
	if s.skipBuf == nil {
		s.skipBuf = make([]byte, 256<<10)
	}
	got, err := io.CopyBuffer(writeOnly{io.Discard}, io.LimitReader(s.cr, n), s.skipBuf)
	if err == nil && got < n {
		err = io.EOF
	}
	return err
}

// writeOnly hides its Writer's ReadFrom, so that io.CopyBuffer uses the buffer it is given.
type writeOnly struct{ io.Writer }

// newMemberStream reads the tar in r. maxMembers bounds the number of members (0: no bound).
func newMemberStream(r io.Reader, maxMembers int) *memberStream {
	return &memberStream{cr: &countingReader{R: r}, maxMembers: maxMembers}
}

// Next returns the next member, or io.EOF after the last one. Whatever the caller left unread
// of the previous member's body is skipped.
func (s *memberStream) Next() (streamMember, error) {
	for {
		if s.sparse {
			// Its stored size is not its size: read the rest of it to learn where it ends.
			if _, err := io.Copy(io.Discard, s.tr); err != nil {
				return streamMember{}, fmt.Errorf("member at offset %d: %w", s.end, unexpected(err))
			}
			s.end, s.sparse = s.cr.N, false
		}
		hdrStart := (s.end + blockSize - 1) / blockSize * blockSize
		var hdr fastHeader
		if s.tr == nil {
			if err := s.skip(s.body.n); err != nil {
				return streamMember{}, fmt.Errorf("member at offset %d: %w", s.end-s.body.n, unexpected(err))
			}
			// A tar that ends right after the last member's data, without padding, ends
			// there, as BuildIndex (and archive/tar at a header boundary) sees it.
			if _, err := io.CopyN(io.Discard, s.cr, s.pad); err == io.EOF {
				return streamMember{}, io.EOF
			} else if err != nil {
				return streamMember{}, fmt.Errorf("reading tar header at offset %d: %w", hdrStart, err)
			}
			s.body.n, s.pad = 0, 0
			n, err := io.ReadFull(s.cr, s.blk[:])
			if err == nil && parseFastHeader(&s.blk, &hdr) {
				// decoded directly
			} else if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return streamMember{}, fmt.Errorf("reading tar header at offset %d: %w", hdrStart, err)
			} else {
				// From here on archive/tar reads the headers, starting with this block.
				s.tr = tar.NewReader(io.MultiReader(bytes.NewReader(s.blk[:n]), s.cr))
			}
		}
		if s.tr != nil {
			th, err := s.tr.Next()
			if err == io.EOF {
				return streamMember{}, io.EOF
			}
			if err != nil {
				if s.n == 0 && len(s.insecure) == 0 && errors.Is(err, tar.ErrHeader) {
					return streamMember{}, fmt.Errorf("%w: not a tar file: %w", ErrNotDockerArchive, err)
				}
				return streamMember{}, fmt.Errorf("reading tar header at offset %d: %w", hdrStart, err)
			}
			hdr = headerOf(th)
			s.sparse = isSparse(th)
		}
		// Both paths read exactly the header blocks, so the count is where the data starts.
		dataStart := s.cr.N
		s.end = dataStart + hdr.size
		if s.maxMembers > 0 && s.n >= s.maxMembers {
			return streamMember{}, fmt.Errorf("%w: more than %d tar members", ErrTooLarge, s.maxMembers)
		}
		var body io.Reader = s.tr
		if s.tr == nil {
			s.body = exactReader{r: s.cr, n: hdr.size}
			s.pad = (blockSize - hdr.size%blockSize) % blockSize
			body = &s.body
		}
		m, ok, climbed := makeMember(hdr, dataStart, hdrStart)
		if climbed {
			s.insecure = append(s.insecure, hdr.name)
		}
		if !ok {
			continue
		}
		s.n++
		if m.Type != tar.TypeReg {
			body = eofReader{}
		}
		return streamMember{Member: m, Body: body}, nil
	}
}

// Offset is how many bytes of the tar have been read.
func (s *memberStream) Offset() int64 { return s.cr.N }

// Insecure returns the raw names of members skipped because they would leave the root.
func (s *memberStream) Insecure() []string { return s.insecure }

// countingReader counts the bytes read from R in N.
type countingReader struct {
	R io.Reader
	N int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// exactReader reads the n bytes of a member's data; an input that ends before is
// io.ErrUnexpectedEOF, as archive/tar reports it.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return n, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// memberFacts is what ReadStream learned about a regular member as it passed.
type memberFacts struct {
	// Compression of the stored bytes, identified from their first bytes as Resolve does;
	// SkippableStart says zstd bytes start with a skippable frame (see
	// StartsWithSkippableFrame).
	Compression    Compression
	SkippableStart bool
	// Digest is the sha256 digest of the stored bytes.
	Digest digest.Digest
	// DiffID is the sha256 digest of the stored bytes decompressed (the same as Digest when
	// they are not compressed). DiffIDErr is set instead when they do not decompress; it
	// wraps ErrDigestMismatch.
	DiffID    digest.Digest
	DiffIDErr error
	// TarErr is set when the uncompressed content is not a tar (see readLayer); it wraps
	// ErrInvalidLayer. It matters only for a member that is a layer.
	TarErr error
	// Kept says the bytes are held in memory (see Reader.KeptData); otherwise they were
	// handed to StreamOptions.Forward.
	Kept bool
}

// streamState is what a Reader made by ReadStream knows beyond its index. It is not modified
// after ReadStream returns.
type streamState struct {
	facts map[int64]*memberFacts // by data offset, for every regular member
	kept  *keptData
}

// StreamOptions configure ReadStream.
type StreamOptions struct {
	Limits Limits
	// Forward receives, one member at a time and in archive order, the body of every regular
	// member that is not kept in memory, with the compression its first bytes show. It runs
	// on a goroutine of its own while ReadStream keeps reading, hashing and, for a compressed
	// member, decompressing to compute its diffID; a few hundred KiB are buffered between
	// them. It should read body to the end; whatever it leaves is still read and hashed.
	// Failures are the caller's to record: ReadStream carries on. Nil discards the bodies.
	Forward func(m Member, stored Compression, body io.Reader)
}

// ReadStream reads an archive from in once, front to back, decompressing it on the fly when
// its first bytes say it is compressed, and never writes to disk. Members that look like
// metadata (JSON: manifest.json, repositories, index.json, configs, OCI manifests, v1 json)
// or are tiny are kept in memory, up to Limits.MaxStreamMemory in total (past it:
// ErrTooLarge); every other regular member is hashed (and, if compressed, decompressed and
// hashed) while it is passed to o.Forward. At the end the images are derived exactly as
// newReader derives them, so selection and Resolve behave the same; only the bodies of
// forwarded members cannot be read again, and StreamFacts says what they held. The input is
// read up to trailLimit bytes past the end of the tar (see Trailer), so a compressed
// stream's trailer is checked, but a stream that goes on is not decompressed further and a
// writer into a pipe that sends more finds it closed.
func ReadStream(ctx context.Context, name string, in io.Reader, o StreamOptions) (*Reader, error) {
	limits := o.Limits.WithDefaults()
	src, _, closeDec, err := decompressStream(in)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	defer closeDec()
	st := &streamer{ctx: ctx, limits: limits, forward: o.Forward, h: sha256.New(), buf: make([]byte, chunkSize)}
	ms := newMemberStream(src, limits.MaxMembers)
	ix := &Index{byName: make(map[string]int)}
	state := &streamState{facts: map[int64]*memberFacts{}, kept: &keptData{}}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sm, err := ms.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive %q: %w", name, err)
		}
		ix.addMember(sm.Member)
		if sm.Type != tar.TypeReg {
			continue
		}
		f, data, err := st.member(sm)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("archive %q: member %q: %w", name, sm.Name, err)
		}
		state.facts[sm.Offset] = f
		if f.Kept {
			state.kept.add(sm.Offset, data)
		}
	}
	size := ms.Offset()
	// Read what follows the tar, within a bound: the padding tar(1) adds, and a compressed
	// stream's trailer, whose checksum is only checked there.
	trail, err := readTrailer(src)
	if err != nil {
		return nil, fmt.Errorf("archive %q: after the end of the tar: %w", name, err)
	}
	ix.r, ix.size, ix.end, ix.insecure = state.kept, size, size, ms.Insecure()
	ix.finish()
	r := &Reader{name: name, ix: ix, limits: limits, stream: state, trail: &trail}
	if err := r.loadImages(); err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	return r, nil
}

// streamer holds the per-member machinery of ReadStream, reused from member to member.
type streamer struct {
	ctx     context.Context
	limits  Limits
	forward func(Member, Compression, io.Reader)
	kept    int64 // bytes held in memory so far
	h       hash.Hash
	buf     []byte
	head    [blockSize]byte
	fwPipe  *chunkPipe
	difPipe *chunkPipe
}

// member reads one regular member: into memory, or through the hashers to Forward.
func (st *streamer) member(sm streamMember) (*memberFacts, []byte, error) {
	head := st.head[:min(sm.Size, blockSize)]
	if _, err := io.ReadFull(sm.Body, head); err != nil {
		return nil, nil, unexpected(err)
	}
	if !keepMember(head, sm.Size, st.limits.MaxManifestSize) {
		f, err := st.pass(sm, head)
		return f, nil, err
	}
	if st.kept+sm.Size > st.limits.MaxStreamMemory {
		return nil, nil, fmt.Errorf("%w: keeping its %d bytes in memory would take the metadata held while streaming past %d bytes", ErrTooLarge, sm.Size, st.limits.MaxStreamMemory)
	}
	st.kept += sm.Size
	data := make([]byte, sm.Size)
	copy(data, head)
	if _, err := io.ReadFull(sm.Body, data[len(head):]); err != nil {
		return nil, nil, unexpected(err)
	}
	f := &memberFacts{Kept: true, Compression: sniffMember(data[:min(len(data), 10)]), SkippableStart: StartsWithSkippableFrame(data), Digest: digest.FromBytes(data)}
	compressed := f.Compression != Uncompressed
	diffID, tarErr, err := readLayer(bytes.NewReader(data), f.Compression, compressed, true)
	f.DiffID, f.TarErr, f.DiffIDErr = diffID, tarErr, err
	if !compressed {
		f.DiffID = f.Digest
	}
	return f, data, nil
}

// keepMember decides from a member's first bytes whether it is kept in memory: tiny members,
// and members up to maxSize that look like JSON (not a tar, first non-blank byte '{' or '[').
func keepMember(head []byte, size, maxSize int64) bool {
	if size <= keepAlways {
		return true
	}
	if size > maxSize || (len(head) >= blockSize && isTarHeader(head[:blockSize])) {
		return false
	}
	head = bytes.TrimLeft(head, " \t\r\n")
	// A head of blanks only may still be JSON: keep it rather than lose metadata.
	return len(head) == 0 || head[0] == '{' || head[0] == '['
}

// pass streams one member through the hashers to Forward.
func (st *streamer) pass(sm streamMember, head []byte) (*memberFacts, error) {
	f := &memberFacts{Compression: sniffMember(head[:min(len(head), 10)]), SkippableStart: StartsWithSkippableFrame(head)}
	st.h.Reset()
	if st.difPipe == nil {
		st.difPipe = newChunkPipe()
	}
	// Every passed member is read as a tar on the way (most are layers); a compressed one is
	// also decompressed and hashed for its diffID.
	diff := startDigestTask(st.difPipe, f.Compression)
	var fw *chunkPipe
	fwDone := make(chan struct{})
	if st.forward != nil {
		if st.fwPipe == nil {
			st.fwPipe = newChunkPipe()
		}
		fw = st.fwPipe
		fw.reset()
		m, c := sm.Member, f.Compression
		go func() {
			defer close(fwDone)
			defer fw.stopReading()
			st.forward(m, c, fw)
		}()
	} else {
		close(fwDone)
	}
	emit := func(p []byte) {
		st.h.Write(p)
		diff.p.write(p)
		if fw != nil {
			fw.write(p)
		}
	}
	emit(head)
	var readErr error
	for readErr == nil {
		if err := st.ctx.Err(); err != nil {
			readErr = err
			break
		}
		n, err := sm.Body.Read(st.buf)
		if n > 0 {
			emit(st.buf[:n])
		}
		if err == io.EOF {
			break
		}
		readErr = unexpected(err)
	}
	if fw != nil {
		fw.closeWrite(readErr)
	}
	<-fwDone
	if readErr != nil {
		diff.abort()
		return nil, readErr
	}
	f.Digest = digest.NewDigest(digest.SHA256, st.h)
	f.DiffID, f.TarErr, f.DiffIDErr = diff.finish()
	if f.Compression == Uncompressed {
		f.DiffID = f.Digest
	}
	return f, nil
}

// unexpected turns an early end of a member body into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// digestTask reads what is written to its pipe on a goroutine as a layer (see readLayer):
// as a tar, and, when it is compressed, decompressed and hashed.
type digestTask struct {
	p      *chunkPipe
	done   chan struct{}
	d      digest.Digest
	tarErr error
	err    error
}

func startDigestTask(p *chunkPipe, c Compression) *digestTask {
	p.reset()
	t := &digestTask{p: p, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		// The decompressor may stop before the end (trailing data); stopReading lets the
		// writer drop the rest instead of blocking.
		defer p.stopReading()
		t.d, t.tarErr, t.err = readLayer(p, c, c != Uncompressed, true)
	}()
	return t
}

// finish returns the diffID (of a compressed member), the error that makes the content not a
// tar, and the error that makes it not decompress.
func (t *digestTask) finish() (digest.Digest, error, error) {
	t.p.closeWrite(nil)
	<-t.done
	return t.d, t.tarErr, t.err
}

func (t *digestTask) abort() {
	t.p.closeWrite(errCheckAborted)
	<-t.done
}

// chunkSize and chunkCount size a chunkPipe: enough in flight that the reading goroutine
// and the consumer work at the same time.
const (
	chunkSize  = 256 << 10
	chunkCount = 4
)

// chunkPipe hands bytes from one goroutine to another through a few reusable buffers, so
// the writer can read ahead while the reader works (io.Pipe blocks the writer until every
// byte is taken). Writes never fail: once the reader has stopped, data is dropped.
type chunkPipe struct {
	bufs [chunkCount][]byte
	full chan []byte
	free chan []byte
	quit chan struct{}
	stop sync.Once
	err  error // set by closeWrite before full is closed

	cur []byte // reader side: the chunk being read and the position in it
	off int
}

func newChunkPipe() *chunkPipe {
	p := &chunkPipe{}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, chunkSize)
	}
	return p
}

// reset prepares the pipe for a new stream. Neither side may be using it.
func (p *chunkPipe) reset() {
	p.full = make(chan []byte, chunkCount)
	p.free = make(chan []byte, chunkCount)
	p.quit = make(chan struct{})
	p.stop = sync.Once{}
	p.err, p.cur, p.off = nil, nil, 0
	for _, b := range p.bufs {
		p.free <- b
	}
}

func (p *chunkPipe) write(b []byte) {
	for len(b) > 0 {
		var c []byte
		select {
		case c = <-p.free:
		case <-p.quit:
			return
		}
		n := copy(c[:cap(c)], b)
		b = b[n:]
		select {
		case p.full <- c[:n]:
		case <-p.quit:
			return
		}
	}
}

// closeWrite ends the stream: the reader sees err, or io.EOF if err is nil.
func (p *chunkPipe) closeWrite(err error) {
	p.err = err
	close(p.full)
}

// stopReading tells the writer that nothing more will be read.
func (p *chunkPipe) stopReading() { p.stop.Do(func() { close(p.quit) }) }

func (p *chunkPipe) Read(b []byte) (int, error) {
	for p.off == len(p.cur) {
		if p.cur != nil {
			p.free <- p.cur[:cap(p.cur)] // never blocks: free has room for every buffer
			p.cur, p.off = nil, 0        // so that a read after the end ends again
		}
		c, ok := <-p.full
		if !ok {
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.cur, p.off = c, 0
	}
	n := copy(b, p.cur[p.off:])
	p.off += n
	return n, nil
}

// errNotKept is what reading a forwarded member's bytes gives.
var errNotKept = errors.New("archive: the member was streamed on, not kept in memory (it does not look like metadata)")

// keptData is the io.ReaderAt of a streamed archive's index: it serves the members kept in
// memory, at their offsets in the stream, and nothing else.
type keptData struct {
	offs []int64 // increasing
	data [][]byte
}

func (k *keptData) add(off int64, data []byte) {
	k.offs = append(k.offs, off)
	k.data = append(k.data, data)
}

// find returns the kept member whose data starts at or before off.
func (k *keptData) find(off int64) (int, bool) {
	i := sort.Search(len(k.offs), func(i int) bool { return k.offs[i] > off }) - 1
	return i, i >= 0
}

func (k *keptData) ReadAt(p []byte, off int64) (int, error) {
	i, ok := k.find(off)
	if !ok || off-k.offs[i] >= int64(len(k.data[i])) {
		return 0, errNotKept
	}
	n := copy(p, k.data[i][off-k.offs[i]:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// StreamFacts returns what was learned about a regular member while the archive streamed
// past; false for a Reader not made by ReadStream, or a member that is not a regular file.
func (r *Reader) StreamFacts(m Member) (memberFacts, bool) {
	if r.stream == nil {
		return memberFacts{}, false
	}
	f, ok := r.stream.facts[m.Offset]
	if !ok || m.Type != tar.TypeReg {
		return memberFacts{}, false
	}
	return *f, true
}

// KeptData returns the bytes of a member that ReadStream kept in memory. The slice must not
// be modified.
func (r *Reader) KeptData(m Member) ([]byte, bool) {
	if r.stream == nil {
		return nil, false
	}
	i, ok := r.stream.kept.find(m.Offset)
	if !ok || r.stream.kept.offs[i] != m.Offset {
		return nil, false
	}
	return r.stream.kept.data[i], true
}

// VerifyStreamed checks an image of a Reader made by ReadStream against what its members
// held as they passed: every layer member hashes to the digest the image's manifest gives it
// and decompresses to the config's diffID (Resolve has checked the config against the image
// ID). It is the streaming counterpart of reading every blob with full verification; a
// mismatch wraps ErrDigestMismatch.
func (img *Image) VerifyStreamed() error {
	res, err := img.Resolve()
	if err != nil {
		return err
	}
	var errs []error
	for j, l := range res.Layers {
		f, ok := img.r.StreamFacts(l.Member)
		if !ok {
			errs = append(errs, fmt.Errorf("layer %d %q: %w: member %q was not seen in the stream", j, l.Name, ErrMemberNotFound, l.Member.Name))
			continue
		}
		switch {
		case f.DiffIDErr != nil:
			errs = append(errs, fmt.Errorf("layer %d %q: %w", j, l.Name, f.DiffIDErr))
		case f.DiffID != l.DiffID:
			errs = append(errs, fmt.Errorf("layer %d %q: %w: uncompressed content is %s, the config's diffID is %s", j, l.Name, ErrDigestMismatch, f.DiffID, l.DiffID))
		case f.TarErr != nil:
			errs = append(errs, fmt.Errorf("layer %d %q: %w", j, l.Name, f.TarErr))
		case l.Size >= 0 && f.Digest != l.Digest:
			// Served as stored (l.Size -1: xz and bzip2 members are served decompressed,
			// their digest is the diffID checked above).
			errs = append(errs, fmt.Errorf("layer %d %q: %w: content is %s, expected %s", j, l.Name, ErrDigestMismatch, f.Digest, l.Digest))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("archive %q: %s: %w", img.r.name, img.Name(), errors.Join(errs...))
	}
	return nil
}
