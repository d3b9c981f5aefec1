package zstdseek

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// WriterOptions configure NewWriter.
type WriterOptions struct {
	Level       int // zstd level as zstd(1) numbers them (1..22; 0 means 3)
	FrameSize   int // decompressed bytes after which a frame is cut automatically (0 means 4 MiB; at most 256 MiB)
	Concurrency int // frames compressed at once (0 means runtime.GOMAXPROCS(0))
	// PartSize, when positive, splits the output into parts of at most PartSize bytes,
	// each a seekable zstd stream of its own: a part ends, with the seek table of its
	// frames, before the first frame that would not fit in it. NextPart returns the writer
	// of each part after the first (the writer given to NewWriter). A frame that does not
	// fit even in an empty part is an error.
	PartSize int64
	NextPart func() (io.Writer, error)
}

var errClosed = errors.New("zstdseek: write to closed Writer")

// A Writer compresses what is written to it into a seekable zstd stream.
//
// Frames are compressed by up to Concurrency goroutines while the caller keeps writing,
// and written to the underlying writer in order. A Writer without spools holds at most
// about 2×Concurrency frames in memory at once; each spool (see Spool) adds the frame it is
// filling and those waiting for its output. The output depends only on the bytes written,
// the points where frames were ended (EndFrame, WriteSkippable, FrameSize) and the level:
// not on Concurrency nor on how the bytes were split among Write calls.
//
// A Writer is not safe for concurrent use, except Spool, which may be called from any
// goroutine. Close MUST be called to write the seek table, or Abort to stop without one.
// Once writing to the underlying writer failed, every later call returns that error.
type Writer struct {
	// Fixed at NewWriter (or Spool), and shared with the Writer's spools.
	enc       *zstd.Encoder
	frameSize int
	workers   chan struct{} // semaphore: one token per frame being compressed
	bufs      *sync.Pool    // *[]byte, frame and output buffers

	dst   io.Writer
	buf   []byte        // the frame being filled
	queue chan *job     // frames in file order, to the output goroutine
	done  chan struct{} // closed when the output goroutine returns
	// bare says this is a spool (Writer.Spool): Close writes no seek table.
	bare bool

	mu  sync.Mutex
	err error // sticky; guarded by mu

	// entries are the current part's; partBytes its bytes written so far. Both are owned
	// by the output goroutine until done is closed.
	entries   []entry
	partBytes int64
	partSize  int64
	nextPart  func() (io.Writer, error)
	closed    bool
	closeErr  error
}

// job is one frame on its way to the output: out is valid once ready is closed.
type job struct {
	ready chan struct{}
	out   []byte
	e     entry
	// pooled says out came from the buffer pool and goes back once written.
	pooled bool
}

// NewWriter returns a Writer that writes a seekable zstd stream to w.
func NewWriter(w io.Writer, o WriterOptions) (*Writer, error) {
	level := o.Level
	switch {
	case level == 0:
		level = defaultLevel
	case level < 1 || level > 22:
		return nil, fmt.Errorf("zstdseek: level %d out of range 1..22", o.Level)
	}
	frameSize := o.FrameSize
	switch {
	case frameSize == 0:
		frameSize = defaultFrameSize
	case frameSize < 0 || frameSize > maxFrameSize:
		return nil, fmt.Errorf("zstdseek: frame size %d out of range 1..%d", o.FrameSize, maxFrameSize)
	}
	if o.PartSize < 0 || (o.PartSize > 0) != (o.NextPart != nil) {
		return nil, errors.New("zstdseek: PartSize and NextPart go together, and PartSize is not negative")
	}
	conc := o.Concurrency
	switch {
	case conc == 0:
		conc = runtime.GOMAXPROCS(0)
	case conc < 0:
		return nil, fmt.Errorf("zstdseek: concurrency %d is negative", o.Concurrency)
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(conc),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(false),
	)
	if err != nil {
		return nil, fmt.Errorf("zstdseek: %w", err)
	}
	sw := &Writer{
		dst:       w,
		enc:       enc,
		frameSize: frameSize,
		partSize:  o.PartSize,
		nextPart:  o.NextPart,
		workers:   make(chan struct{}, conc),
		queue:     make(chan *job, conc),
		done:      make(chan struct{}),
		bufs:      new(sync.Pool),
	}
	go sw.output()
	return sw, nil
}

// Spool returns a Writer that compresses what is written to it exactly as w would (same
// level and frame size, sharing w's encoder) into bare frames written to dst. w and all its
// spools together compress at most Concurrency frames at once: spools share the cores, but
// each holds a frame of its own while it fills it. A spool's Close writes no seek table;
// Frames then describes what it wrote, and w's AppendFrames copies it into w's output. A
// spool cannot split its output. Spool may be called from any goroutine, concurrently with
// w's other methods: it reads only what NewWriter fixed.
//
// Writing a run of bytes to a spool and appending its frames to w after an EndFrame gives
// the same output as writing those bytes to w itself and then calling EndFrame.
func (w *Writer) Spool(dst io.Writer) *Writer {
	sw := &Writer{
		dst:       dst,
		enc:       w.enc,
		frameSize: w.frameSize,
		workers:   w.workers,
		queue:     make(chan *job, cap(w.queue)),
		done:      make(chan struct{}),
		bufs:      w.bufs,
		bare:      true,
	}
	go sw.output()
	return sw
}

// Frames are compressed frames a spool wrote (see Writer.Spool).
type Frames struct {
	entries []entry
}

// Frames describes the frames this spool wrote. It is valid once Close succeeded, and
// empty for a Writer that is not a spool.
func (w *Writer) Frames() Frames {
	if !w.bare || !w.closed || w.closeErr != nil {
		return Frames{}
	}
	return Frames{entries: w.entries}
}

// Size is the number of compressed bytes.
func (f Frames) Size() int64 {
	var n int64
	for _, e := range f.entries {
		n += int64(e.c)
	}
	return n
}

// DecompressedSize is the number of bytes the frames decompress to.
func (f Frames) DecompressedSize() int64 {
	var n int64
	for _, e := range f.entries {
		n += int64(e.d)
	}
	return n
}

// AppendFrames ends the current frame, then copies frames, read from r (the bytes a spool
// wrote, from their start), to the output as frames of w's own. The frames are trusted to
// be what the spool wrote: a reader that yields other bytes yields a broken stream.
func (w *Writer) AppendFrames(r io.Reader, f Frames) error {
	if w.closed {
		return errClosed
	}
	w.endFrame()
	for _, e := range f.entries {
		if err := w.loadErr(); err != nil {
			return err
		}
		buf := w.getBuf(int(e.c))[:e.c]
		if _, err := io.ReadFull(r, buf); err != nil {
			w.putBuf(buf)
			return fmt.Errorf("zstdseek: reading spooled frames: %w", err)
		}
		j := &job{ready: make(chan struct{}), out: buf, e: e, pooled: true}
		close(j.ready)
		w.queue <- j
	}
	return w.loadErr()
}

// Write buffers p into the current frame, handing the frame to a compressing goroutine each
// time it reaches FrameSize.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errClosed
	}
	if err := w.loadErr(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = w.getBuf(w.frameSize)
		}
		k := min(w.frameSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
		if len(w.buf) == w.frameSize {
			w.endFrame()
			if err := w.loadErr(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// EndFrame ends the current frame now, so that the next byte written starts a new frame.
// It does nothing when the current frame is empty.
func (w *Writer) EndFrame() error {
	if w.closed {
		return errClosed
	}
	w.endFrame()
	return w.loadErr()
}

// WriteSkippable ends the current frame, then writes a skippable frame (magic 0x184D2A50)
// holding payload, with a seek table entry of decompressed size 0. Reader.Skippable returns
// the payloads; zstd decoders skip them. payload is copied; it may be at most 256 MiB.
func (w *Writer) WriteSkippable(payload []byte) error {
	if w.closed {
		return errClosed
	}
	if len(payload) > maxSkippableSize {
		return fmt.Errorf("zstdseek: skippable payload of %d bytes exceeds %d", len(payload), maxSkippableSize)
	}
	w.endFrame()
	if err := w.loadErr(); err != nil {
		return err
	}
	out := make([]byte, 0, skippableHeaderSize+len(payload))
	out = binary.LittleEndian.AppendUint32(out, skippableMagicLow)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
	out = append(out, payload...)
	j := &job{ready: make(chan struct{}), out: out, e: entry{c: uint32(len(out))}}
	close(j.ready)
	w.queue <- j
	return w.loadErr()
}

// Close ends the current frame, waits until every frame is written, then writes the seek
// table (the last part's, when split). It closes no underlying writer. Later calls return the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.endFrame()
	w.closed = true
	close(w.queue)
	<-w.done
	if err := w.loadErr(); err != nil {
		w.closeErr = err
		return err
	}
	if w.bare {
		return nil
	}
	// w.entries is ours now: the output goroutine is done.
	// `zstd -d` (1.5.4) accepts a stream holding only skippable frames, so an empty stream
	// is the seek table alone.
	if err := writeFull(w.dst, appendSeekTable(nil, w.entries)); err != nil {
		w.setErr(err)
		w.closeErr = err
		return err
	}
	return nil
}

// errAborted is what a Writer returns once Abort was called.
var errAborted = errors.New("zstdseek: Writer aborted")

// Abort stops the Writer without writing anything more: the frames not written yet are
// dropped, and no seek table is written. It is for a stream that failed; every later call
// returns an error. Abort after Close does nothing.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.setErr(errAborted) // the output goroutine drains the queue without writing
	w.putBuf(w.buf)
	w.buf = nil
	w.closed = true
	close(w.queue)
	<-w.done
	w.closeErr = w.loadErr()
}

// endFrame hands the current frame, if any, to a compressing goroutine and queues it for
// output. It blocks only while Concurrency frames are being compressed or the output queue
// is full.
func (w *Writer) endFrame() {
	if len(w.buf) == 0 {
		return
	}
	src := w.buf
	w.buf = nil
	j := &job{ready: make(chan struct{}), pooled: true}
	w.workers <- struct{}{}
	go func() {
		defer func() { <-w.workers }()
		j.out = w.enc.EncodeAll(src, w.getBuf(maxCompressed(len(src))))
		j.e = entry{c: uint32(len(j.out)), d: uint32(len(src))}
		if uint64(len(j.out)) > maxUint32 {
			// Cannot happen with frames of at most 256 MiB; checked so a table never lies.
			j.out, j.pooled = nil, false
		}
		w.putBuf(src)
		close(j.ready)
	}()
	w.queue <- j
}

const maxUint32 = 1<<32 - 1

// output writes the queued frames in order and records their entries. After a failed
// write it keeps draining the queue, without writing, so that producers never block.
func (w *Writer) output() {
	defer close(w.done)
	for j := range w.queue {
		<-j.ready
		if w.loadErr() == nil {
			switch {
			case j.out == nil:
				w.setErr(fmt.Errorf("zstdseek: frame %d: compressed size exceeds 4 GiB", len(w.entries)))
			default:
				w.setErr(w.writeFrame(j))
			}
		}
		if j.pooled {
			w.putBuf(j.out)
		}
	}
}

// writeFrame writes one frame and records its entry, first ending the part if the frame
// would not fit in it.
func (w *Writer) writeFrame(j *job) error {
	if w.partSize > 0 {
		if w.partBytes+int64(len(j.out))+seekTableSize(len(w.entries)+1) > w.partSize && len(w.entries) > 0 {
			if err := w.endPart(); err != nil {
				return err
			}
		}
		if int64(len(j.out))+seekTableSize(1) > w.partSize {
			return fmt.Errorf("zstdseek: a frame of %d bytes does not fit in parts of %d bytes", len(j.out), w.partSize)
		}
	}
	if len(w.entries) >= maxFrames {
		return fmt.Errorf("zstdseek: more than %d frames", maxFrames)
	}
	if err := writeFull(w.dst, j.out); err != nil {
		return err
	}
	w.partBytes += int64(len(j.out))
	w.entries = append(w.entries, j.e)
	return nil
}

// endPart writes the current part's seek table and moves on to the next part.
func (w *Writer) endPart() error {
	if err := writeFull(w.dst, appendSeekTable(nil, w.entries)); err != nil {
		return err
	}
	dst, err := w.nextPart()
	if err != nil {
		return err
	}
	w.dst, w.entries, w.partBytes = dst, nil, 0
	return nil
}

func writeFull(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	return err
}

func (w *Writer) loadErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// getBuf returns an empty buffer of at least n bytes' capacity, from the pool when it has
// one: frames and their compressed forms are filled without growing. Buffers are made large
// enough for either, so that the pool's buffers serve every use.
func (w *Writer) getBuf(n int) []byte {
	if b, ok := w.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, maxCompressed(w.frameSize)))
}

// maxCompressed bounds a frame compressed from n bytes: the encoder stores incompressible
// blocks raw, each 128 KiB block with a 3-byte header, plus the frame's header and checksum.
func maxCompressed(n int) int { return n + n>>10 + 64 }

func (w *Writer) putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	w.bufs.Put(&b)
}
