package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/layout"
	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// Errors of writing archives, for errors.Is.
var (
	// ErrExists means Create, or Commit's final rename, found a file at the target path and
	// WithOverwrite(true) was not given.
	ErrExists = errors.New("archive: file exists")
	// ErrClosed means the WritableArchive was already committed or closed.
	ErrClosed = errors.New("archive: archive already committed or closed")
	// ErrNoImages means Commit was called before any image was committed.
	ErrNoImages = errors.New("archive: no image committed")
	// ErrBusy means Commit was called while an image destination was still open and not
	// committed.
	ErrBusy = errors.New("archive: an image is still being written")
)

// Layout is the shape of an archive that Create or NewWriter writes.
type Layout string

const (
	// LayoutDocker is what containers/image (podman save, skopeo copy) writes: root-level
	// <diffid-hex>.tar layers, uncompressed, and <config-hex>.json configs, then
	// manifest.json and repositories. With WithLegacyDirs, also a <v1id>/ directory per layer
	// (VERSION, json, and layer.tar as a symlink to the root-level layer) for pre-1.10 Docker.
	LayoutDocker Layout = "docker"
	// LayoutOCI is what Docker 25 and later write: an OCI image layout (oci-layout,
	// index.json with one descriptor per tag, blobs/sha256/ holding manifests, configs and
	// layers) plus manifest.json pointing into blobs/sha256/ with LayerSources, and
	// repositories. Layers are stored as the source has them (compressed or not) and the
	// source's manifest is kept, so the image digest is preserved.
	LayoutOCI Layout = "oci"

	// DefaultLayout is the layout used when none is chosen.
	DefaultLayout = LayoutDocker
)

// CreateOption configures Create and NewWriter. Open and OpenStream take OpenOption, so a
// writing setting cannot be given to a reader, where it would mean nothing.
type CreateOption func(*createOptions)

// createOptions are the settings of Create and NewWriter.
type createOptions struct {
	layout        Layout
	overwrite     bool
	legacyDirs    bool
	modTime       time.Time
	tempDir       string
	maxConfigSize *int64 // nil unless WithWriteMaxConfigSize was given
	compression   Compression
	level         int
	splitSize     int64 // WithSplit
	// wrapOutput wraps the output, for tests that inject write failures.
	wrapOutput func(io.Writer) io.Writer
}

// WithLayout chooses the layout of a written archive (default DefaultLayout).
func WithLayout(l Layout) CreateOption { return func(o *createOptions) { o.layout = l } }

// WithOverwrite lets Create replace an existing file. The file is replaced only by Commit,
// in one rename; until then, and if anything fails, it is left as it was. NewWriter and
// Create("-"), which have no file to replace, refuse WithOverwrite(true).
func WithOverwrite(overwrite bool) CreateOption {
	return func(o *createOptions) { o.overwrite = overwrite }
}

// WithLegacyDirs adds the pre-1.10 Docker directories (<v1id>/VERSION, json, layer.tar) to an
// archive in LayoutDocker. Only Docker older than 1.10 needs them.
func WithLegacyDirs(legacy bool) CreateOption {
	return func(o *createOptions) { o.legacyDirs = legacy }
}

// WithSourceDateEpoch sets the modification time of every member (whole seconds). The default
// is the Unix epoch, which like any fixed time gives reproducible output. The library does not
// read the SOURCE_DATE_EPOCH environment variable itself; a program that honours it passes
// it here.
func WithSourceDateEpoch(t time.Time) CreateOption {
	return func(o *createOptions) { o.modTime = t }
}

// WithWriteTempDir sets where Create and NewWriter spool blobs: those of images waiting for
// their turn, and on a stream those of unknown size or digest. The default (and "") is
// os.TempDir(), which honours TMPDIR. WithTempDir is its counterpart for Open and OpenStream.
func WithWriteTempDir(dir string) CreateOption {
	return func(o *createOptions) { o.tempDir = dir }
}

// WithWriteMaxConfigSize limits the size of an image config that an image destination
// accepts (default 8 MiB, as for reading); configs are held in memory until the archive is
// committed. It must be at least 1. WithMaxConfigSize is its counterpart for Open and
// OpenStream.
func WithWriteMaxConfigSize(n int64) CreateOption {
	return func(o *createOptions) { o.maxConfigSize = &n }
}

// Compression is how Create and NewWriter compress an archive as a whole.
type Compression string

const (
	// CompressNone writes a plain tar.
	CompressNone Compression = "none"
	// CompressGzip writes a .tar.gz, compressed in 1 MiB blocks on every core (pgzip).
	CompressGzip Compression = "gzip"
	// CompressZstd writes a seekable .tar.zst: zstd frames cut where members start (and every
	// 4 MiB within large ones), compressed on every core, with the tar's header blocks and
	// the zstd seekable format's seek table in skippable frames at the end. Any zstd decoder
	// reads it as a plain .tar.zst; Open reads it in place, decompressing only the frames
	// it needs.
	CompressZstd Compression = "zstd"
)

// CompressionFor returns the compression a file name asks for: zstd for .zst and .tzst, gzip
// for .gz and .tgz, none otherwise.
func CompressionFor(path string) Compression {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".zst", ".tzst":
		return CompressZstd
	case ".gz", ".tgz":
		return CompressGzip
	}
	return CompressNone
}

// WithCompression compresses the archive as a whole with c at level, the format's own
// numbering (zstd 1 to 19, gzip 1 to 9; 0 is the format's default: 3 and 6). The output
// depends only on the content and the level, not on the number of cores. The compressed
// output is a stream: blobs of unknown size or digest are spooled first, and a failure after
// a blob's bytes went out fails the archive (see Streaming). For zstd a spooled blob of
// 256 KiB or more is compressed as it arrives, on every core, into the frames the bundle will
// hold, so that the spool takes the compressed size and writing the blob out copies frames.
func WithCompression(c Compression, level int) CreateOption {
	return func(o *createOptions) { o.compression, o.level = c, level }
}

// withOutputWrapper wraps the output writer; tests use it to inject failures.
func withOutputWrapper(f func(io.Writer) io.Writer) CreateOption {
	return func(o *createOptions) { o.wrapOutput = f }
}

// makeCreateOptions applies opts and checks the result; forWriter is set for NewWriter.
func makeCreateOptions(opts []CreateOption, forWriter bool) (createOptions, error) {
	var o createOptions
	for _, f := range opts {
		f(&o)
	}
	switch o.layout {
	case "":
		o.layout = DefaultLayout
	case LayoutDocker, LayoutOCI:
	default:
		return o, fmt.Errorf("archive: unknown layout %q (want %q or %q)", o.layout, LayoutDocker, LayoutOCI)
	}
	if o.legacyDirs && o.layout != LayoutDocker {
		return o, fmt.Errorf("archive: legacy directories need layout %q, not %q", LayoutDocker, o.layout)
	}
	if t := o.modTime; !t.IsZero() && (t.Unix() < 0 || t.Unix() > 1<<33-1) {
		return o, fmt.Errorf("archive: modification time %s is outside what a tar header holds (1970 to 2242)", t)
	}
	if o.overwrite && forWriter {
		return o, errors.New("archive: WithOverwrite(true) applies only to Create with a path, not to NewWriter or standard output")
	}
	if o.maxConfigSize != nil {
		if err := checkLimit("WithWriteMaxConfigSize", *o.maxConfigSize); err != nil {
			return o, err
		}
	}
	if err := checkCompression(o.compression, o.level); err != nil {
		return o, err
	}
	if err := checkSplit(o, forWriter); err != nil {
		return o, err
	}
	return o, nil
}

// checkCompression refuses an unknown compression or a level outside its format's range.
func checkCompression(c Compression, level int) error {
	top := 0
	switch c {
	case "", CompressNone:
	case CompressGzip:
		top = 9
	case CompressZstd:
		top = 19
	default:
		return fmt.Errorf("archive: unknown compression %q (want %q, %q or %q)", c, CompressNone, CompressGzip, CompressZstd)
	}
	if level < 0 || level > top {
		if top == 0 {
			return fmt.Errorf("archive: a compression level needs compression")
		}
		return fmt.Errorf("archive: %s level %d: expected 1 to %d", c, level, top)
	}
	return nil
}

// tarCompression maps a Compression to the tar package's.
func (c Compression) tarCompression() tarfile.Compression {
	switch c {
	case CompressGzip:
		return tarfile.Gzip
	case CompressZstd:
		return tarfile.Zstd
	}
	return tarfile.Uncompressed
}

// WritableArchive is a docker-archive being written. Images are added with containers/image's
// copy.Image to references from NewReference; Commit makes the archive final and visible,
// Close releases it and, unless it was committed, leaves nothing behind:
//
//	a, err := archive.Create("out.tar")
//	if err != nil { … }
//	defer a.Close()
//	for _, img := range images {
//		dst, err := a.NewReference(img.tags...)
//		…
//		if _, err := copy.Image(ctx, policy, dst, img.src, nil); err != nil { … }
//	}
//	if err := a.Commit(); err != nil { … }
//
// # What is written
//
// Each blob (layer or config) is written once, however many images use it. Each image is one
// manifest.json entry: an image committed again (the same config, through another reference
// or with other tags) adds its tags to the first entry, in the order given, and an untagged
// image has "RepoTags": []. A tag belongs to one image: when a later reference gives an
// existing tag to a different image, the later image gets it and the earlier one loses it, as
// docker load or docker tag would do. "Later" means a reference made later by NewReference.
// Only committed images are listed; blobs of an image whose copy failed may remain in the tar
// as unreferenced members. Blobs are identified by digest: in LayoutOCI, which keeps blobs as
// the sources have them, a layer that arrives gzip-compressed for one image and uncompressed
// for another is stored both ways.
//
// # Order and reproducibility
//
// The output depends only on the images, their references' order and the options, never on
// timing: images are listed in the order their references were made with NewReference, and
// each image's new members (layers in manifest order, then its config, then its legacy
// directories or OCI manifest) follow those of the images before it. Member headers have mode
// 0444, uid and gid 0, no user names and one modification time; the JSON files are built
// from sorted or ordered data.
//
// To keep that order when images are copied concurrently, only the image whose turn it is
// (the earliest reference whose image is neither committed nor abandoned) writes into the
// output; the others spool their new blobs to temp files (WithWriteTempDir) that are copied
// in when their turn comes. Copying images in the order of their references therefore spools
// nothing.
// A reference that is never used holds back the images after it until Commit; a destination
// that is closed without being committed gives up its turn.
//
// # Streaming
//
// Blob bytes go straight into the output, hashed and counted on the way; a blob whose size or
// digest differs from what was declared is an error and is not recorded. On a seekable output
// (a file), a blob of unknown size is written with a placeholder header that is patched once
// its size and digest are known, and a failed blob is cut back off the file, so the archive
// stays usable and the images committed before can still be committed. On a stream, a blob of
// unknown size or digest is spooled to a temp file first, and a failure after bytes reached
// the stream is sticky: every later call fails with it. So is a failure to copy a waiting
// image's spooled blob in, since a committed image needs it.
//
// # Concurrency
//
// A WritableArchive is safe for concurrent use: several copy.Image calls may write to it at
// once. Writes to the output are serialized (one blob at a time); image destinations report
// HasThreadSafePutBlob false, so copy.Image sends one image's layers one at a time, in order.
// Commit and Close must not be called while a copy into the archive is running; Close waits
// for a blob write in progress to end.
type WritableArchive struct {
	// Fixed at creation.
	name      string // the path, or "-" for NewWriter
	path      string // the target path for Create; "" for NewWriter
	overwrite bool
	layout    Layout
	legacy    bool
	tempDir   string
	maxConfig int64

	// tw and file are used only by the goroutine that set outBusy, or once the archive is
	// committed or closed. file is the temp file of Create (nil for NewWriter, and once it
	// is closed).
	tw   *tarfile.Writer
	file *os.File
	// compressor, when the archive is compressed, sits between tw and the output; Commit
	// closes it after tw.
	compressor io.WriteCloser
	// parts is the output of a split archive (WithSplit), in place of file.
	parts *partOutput

	mu      sync.Mutex
	idle    *sync.Cond // signalled when outBusy becomes false
	outBusy bool       // a goroutine owns tw
	state   archiveState
	err     error // sticky
	members map[string]*member
	slots   []*slot
	turn    int // index of the first slot not yet finished and flushed
	stats   WriteStats
}

// WriteStats counts what a WritableArchive did so far.
type WriteStats struct {
	// Written is the number of bytes written to the output.
	Written int64
	// Spooled is the number of bytes stored in temp files (compressed, for a zstd bundle):
	// blobs of images waiting for their turn, and blobs of unknown size or digest on a stream.
	Spooled int64
	// Reused is the number of times a blob was not written because the archive had it.
	Reused int
}

// Stats returns the counts so far.
func (a *WritableArchive) Stats() WriteStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

type archiveState int

const (
	stateOpen archiveState = iota
	stateCommitting
	stateCommitted
	stateClosed
)

// member is a tar member of the archive, written or waiting in a spool or in memory.
type member struct {
	name    string
	digest  digest.Digest
	size    int64
	data    []byte // content held in memory (configs, manifests, legacy files)
	link    string // symlink target (legacy layer.tar)
	isLink  bool
	spool   *tarfile.SpooledBlob
	written bool
}

// slot is one reference made by NewReference, the unit of ordering: an image destination
// binds to it and adds members in order.
type slot struct {
	seq     int
	tags    []distref.NamedTagged
	state   slotState
	entries []string // member names, in the order the image uses or adds them
	flushed int      // entries[:flushed] are in the output
	image   *imageRecord
}

type slotState int

const (
	slotUnused    slotState = iota // no destination yet
	slotOpen                       // a destination is writing
	slotCommitted                  // its image is committed
	slotAbandoned                  // closed without commit, or never used before Commit
)

func (s *slot) finished() bool { return s.state == slotCommitted || s.state == slotAbandoned }

// imageRecord is a committed image.
type imageRecord struct {
	configDigest   digest.Digest
	configName     string
	layers         []layerRecord
	manifest       []byte // as given to PutManifest (LayoutOCI)
	manifestType   string
	manifestDigest digest.Digest
	topID          string // repositories value: the top legacy v1 id, or the top diffID hex
}

type layerRecord struct {
	name      string
	diffID    digest.Digest
	digest    digest.Digest
	size      int64
	mediaType string
}

// outputMode is the permission a new output at path gets: 0644, or that of the file it
// replaces.
func outputMode(path string, overwrite bool) fs.FileMode {
	if st, err := os.Stat(path); err == nil && overwrite {
		return st.Mode().Perm()
	}
	return 0o644
}

// Create starts writing an archive to path. The archive is written to a temp file in path's
// directory and renamed to path by Commit; an existing file at path is refused with ErrExists
// unless WithOverwrite(true) is given, and it is left untouched until Commit. "-" writes to
// standard output, as NewWriter(os.Stdout) does. With WithSplit the archive is written as
// parts PATH.000, PATH.001, … instead.
func Create(path string, opts ...CreateOption) (*WritableArchive, error) {
	o, err := makeCreateOptions(opts, path == "-")
	if err != nil {
		return nil, err
	}
	if path == "-" {
		return newWritable("-", "", nil, os.Stdout, o)
	}
	if path == "" {
		return nil, errors.New("archive: empty path")
	}
	if o.splitSize > 0 {
		return createSplit(path, o)
	}
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("archive %q: is a directory", path)
		}
		if !o.overwrite {
			return nil, fmt.Errorf("archive %q: %w (use WithOverwrite to replace it)", path, ErrExists)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive %q: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.darc-tmp")
	if err != nil {
		return nil, fmt.Errorf("archive %q: creating temp file: %w", path, err)
	}
	a, err := newWritable(path, path, f, f, o)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return a, nil
}

// NewWriter starts writing an archive to w, which the archive does not close. When w is a
// regular *os.File, headers of blobs of unknown size are patched in place and failed blobs cut
// back; on any other writer such blobs are spooled to a temp file first. Commit writes the end
// of the archive and neither syncs nor closes w. Close without Commit cuts a file back to
// where it started; bytes already written to a stream cannot be taken back, so a consumer sees
// a tar without manifest.json.
func NewWriter(w io.Writer, opts ...CreateOption) (*WritableArchive, error) {
	o, err := makeCreateOptions(opts, true)
	if err != nil {
		return nil, err
	}
	return newWritable("-", "", nil, w, o)
}

func newWritable(name, path string, file *os.File, w io.Writer, o createOptions) (*WritableArchive, error) {
	if o.wrapOutput != nil {
		w = o.wrapOutput(w)
	}
	if f, ok := w.(*os.File); ok && file != nil && f == file {
		w = &writebackFile{File: f} // Create's temp file, which Commit syncs
	}
	var compressor io.WriteCloser
	if c := o.compression.tarCompression(); c != tarfile.Uncompressed {
		co := tarfile.CompressOptions{Level: o.level}
		if parts, ok := w.(*partOutput); ok {
			co.PartSize, co.NextPart = o.splitSize, parts.next
		}
		cw, err := tarfile.NewCompressor(w, c, co)
		if err != nil {
			return nil, fmt.Errorf("archive %q: %w", name, err)
		}
		compressor, w = cw, cw
	}
	tw, err := tarfile.NewWriter(w, tarfile.WriterOptions{ModTime: o.modTime})
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	a := &WritableArchive{
		name:       name,
		path:       path,
		file:       file,
		overwrite:  o.overwrite,
		layout:     o.layout,
		legacy:     o.legacyDirs,
		tempDir:    o.tempDir,
		maxConfig:  layout.DefaultMaxConfigSize,
		tw:         tw,
		compressor: compressor,
		members:    map[string]*member{},
	}
	if o.maxConfigSize != nil {
		a.maxConfig = *o.maxConfigSize
	}
	a.idle = sync.NewCond(&a.mu)
	return a, nil
}

// Layout is the layout being written.
func (a *WritableArchive) Layout() Layout { return a.layout }

// NewReference returns a reference to use as a copy.Image destination: the image copied to it
// is added to this archive with tags (none: untagged). Call it once per image; the order of
// the calls is the order of the images in the archive (see WritableArchive). A reference may
// be used again after a failed copy; the retried image then goes after the others.
func (a *WritableArchive) NewReference(tags ...distref.NamedTagged) (types.ImageReference, error) {
	norm, err := normalizeTags(tags)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", a.name, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usableLocked(); err != nil {
		return nil, err
	}
	s := &slot{seq: len(a.slots), tags: norm}
	a.slots = append(a.slots, s)
	var sel reference.Selector
	if len(norm) > 0 {
		sel = reference.TagSelector(norm[0])
	}
	ref, err := reference.New(a.name, sel)
	if err != nil {
		ref = reference.Reference{} // a path with ":" cannot be written as a string reference
	}
	return archiveReference{ref: ref, path: a.name, sel: sel, writer: a, slot: s.seq}, nil
}

// normalizeTags normalizes tags the way manifest.json readers do and drops repeats.
func normalizeTags(tags []distref.NamedTagged) ([]distref.NamedTagged, error) {
	out := []distref.NamedTagged{}
	for _, t := range tags {
		if t == nil {
			return nil, fmt.Errorf("%w: nil tag", reference.ErrInvalidReference)
		}
		n, err := reference.NormalizeTag(t.Name() + ":" + t.Tag())
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(x distref.NamedTagged) bool { return x.String() == n.String() }) {
			out = append(out, n)
		}
	}
	return out, nil
}

// bindSlot returns the slot a destination for ref writes to: the reference's own when it was
// not used yet, a new one at the end otherwise.
func (a *WritableArchive) bindSlot(seq int, extra []distref.NamedTagged) (*slot, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.usableLocked(); err != nil {
		return nil, err
	}
	if seq < 0 || seq >= len(a.slots) {
		return nil, fmt.Errorf("archive %q: reference #%d does not belong to this archive", a.name, seq)
	}
	s := a.slots[seq]
	if s.state != slotUnused {
		s = &slot{seq: len(a.slots), tags: slices.Clone(s.tags)}
		a.slots = append(a.slots, s)
	}
	for _, t := range extra {
		if !slices.ContainsFunc(s.tags, func(x distref.NamedTagged) bool { return x.String() == t.String() }) {
			s.tags = append(s.tags, t)
		}
	}
	s.state = slotOpen
	return s, nil
}

func (a *WritableArchive) usableLocked() error {
	if a.state != stateOpen {
		return fmt.Errorf("archive %q: %w", a.name, ErrClosed)
	}
	return a.err
}

// setStickyLocked records a failure that leaves the output unusable.
func (a *WritableArchive) setStickyLocked(err error) {
	if a.err == nil {
		a.err = fmt.Errorf("archive %q: output unusable: %w", a.name, err)
	}
}

// checkTWLocked makes the tar writer's sticky error the archive's.
func (a *WritableArchive) checkTWLocked() {
	if err := a.tw.Err(); err != nil {
		a.setStickyLocked(err)
	}
}

// Member names. Only sha256 digests are accepted (checkDigest), so names fit a tar header.
func (a *WritableArchive) layerName(d digest.Digest) string {
	if a.layout == LayoutOCI {
		return layout.BlobName(d)
	}
	return layout.LayerName(d)
}

func (a *WritableArchive) configName(d digest.Digest) string {
	if a.layout == LayoutOCI {
		return layout.BlobName(d)
	}
	return layout.ConfigName(d)
}

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %w", ErrInvalidManifest, d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: digest %q: only sha256 blobs can be stored in a docker-archive", ErrInvalidManifest, d)
	}
	return nil
}

// turnLocked is the slot whose members go into the output now, or nil.
func (a *WritableArchive) turnLocked() *slot {
	if a.turn < len(a.slots) {
		return a.slots[a.turn]
	}
	return nil
}

// mayWriteDirectLocked reports whether s may stream a blob straight into the output now: it is
// s's turn, everything s added before is out, and no one else is writing.
func (a *WritableArchive) mayWriteDirectLocked(s *slot) bool {
	return a.turnLocked() == s && s.flushed == len(s.entries) && !a.outBusy
}

func (a *WritableArchive) releaseOutLocked() {
	a.stats.Written = a.tw.Offset()
	a.outBusy = false
	a.idle.Broadcast()
}

// addEntry records that s uses the member name (which must be registered) at this point.
func (a *WritableArchive) addEntry(s *slot, name string) {
	a.mu.Lock()
	s.entries = append(s.entries, name)
	a.mu.Unlock()
	a.pump()
}

// lookupAndUse records that s uses the member name if it exists, and returns it.
func (a *WritableArchive) lookupAndUse(s *slot, name string) (*member, bool, error) {
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return nil, false, err
	}
	m, ok := a.members[name]
	if ok {
		s.entries = append(s.entries, name)
		a.stats.Reused++
	}
	a.mu.Unlock()
	if ok {
		a.pump()
	}
	return m, ok, nil
}

// registerLocked adds m unless a member of that name exists; it returns the member now
// registered under the name and whether it is m.
func (a *WritableArchive) registerLocked(m *member) (*member, bool) {
	if old, ok := a.members[m.name]; ok {
		return old, false
	}
	a.members[m.name] = m
	return m, true
}

// pump writes the members that are due: those of the slot whose turn it is, in order, moving
// the turn on when that slot is finished. Whoever finds work does it; a concurrent caller
// returns at once, as the running pump re-checks for work before it stops.
func (a *WritableArchive) pump() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.outBusy || a.err != nil || a.state == stateClosed || a.state == stateCommitted {
		return
	}
	a.outBusy = true
	defer a.releaseOutLocked()
	for a.err == nil {
		s := a.turnLocked()
		if s == nil {
			return
		}
		if s.flushed < len(s.entries) {
			if s.state == slotAbandoned {
				// A failed image's pending blobs are left out; any committed image that
				// uses one of them writes it in its own turn.
				s.flushed = len(s.entries)
				continue
			}
			m := a.members[s.entries[s.flushed]]
			if m.written {
				s.flushed++
				continue
			}
			a.mu.Unlock()
			err := a.writeMember(m)
			a.mu.Lock()
			if err != nil {
				a.checkTWLocked()
				a.setStickyLocked(fmt.Errorf("writing member %q: %w", m.name, err))
				return
			}
			m.written = true
			if m.spool != nil {
				_ = m.spool.Close() // an unlinked temp file: closing cannot lose data
				m.spool = nil
			}
			s.flushed++
			continue
		}
		if !s.finished() {
			return
		}
		a.turn++
	}
}

// writeMember writes a registered member; the caller owns the output.
func (a *WritableArchive) writeMember(m *member) error {
	var err error
	switch {
	case m.isLink:
		_, err = a.tw.WriteSymlink(m.name, m.link)
	case m.data != nil:
		_, err = a.tw.WriteFile(m.name, m.data)
	case m.spool != nil:
		_, err = a.tw.WriteSpooled(m.name, m.spool)
	default:
		err = fmt.Errorf("internal error: member %q has no content", m.name)
	}
	return err
}

// finishSlot marks s committed (with img) or abandoned and lets the turn move on.
func (a *WritableArchive) finishSlot(s *slot, img *imageRecord) {
	a.mu.Lock()
	if s.state == slotOpen {
		if img != nil {
			s.state, s.image = slotCommitted, img
		} else {
			s.state = slotAbandoned
		}
	}
	a.mu.Unlock()
	a.pump()
}

// Commit writes manifest.json and repositories (and oci-layout and index.json in LayoutOCI)
// and the end of the archive. For Create it then syncs the temp file and renames it to the
// path. It fails with ErrNoImages when no image was committed and ErrBusy while an image
// destination is open and uncommitted; the archive stays usable after those two. Any other
// failure removes the temp file. A reference never used is ignored.
func (a *WritableArchive) Commit() error { return a.CommitContext(context.Background()) }

// CommitContext is Commit, abandoned if ctx is done before the archive is final: for Create,
// ctx is consulted once, when the temp file is complete and synced, just before the rename
// (and a commit that reaches the rename is done); for NewWriter, once before the metadata is
// written. An abandoned commit fails with ctx's error and leaves nothing at the output (a
// file that was there is untouched), as any failed commit does.
func (a *WritableArchive) CommitContext(ctx context.Context) error {
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return err
	}
	images := 0
	for _, s := range a.slots {
		switch s.state {
		case slotOpen:
			a.mu.Unlock()
			return fmt.Errorf("archive %q: %w: reference #%d", a.name, ErrBusy, s.seq)
		case slotCommitted:
			images++
		}
	}
	if images == 0 {
		a.mu.Unlock()
		return fmt.Errorf("archive %q: %w", a.name, ErrNoImages)
	}
	for _, s := range a.slots {
		if s.state == slotUnused {
			s.state = slotAbandoned
		}
	}
	a.state = stateCommitting
	a.mu.Unlock()

	a.pump()

	a.mu.Lock()
	for a.outBusy {
		a.idle.Wait()
	}
	err := a.err
	if err == nil && a.turn != len(a.slots) {
		err = fmt.Errorf("archive %q: internal error: %d of %d images written", a.name, a.turn, len(a.slots))
	}
	var files []layout.File
	if err == nil {
		files, err = a.metadataLocked()
	}
	a.outBusy = true
	a.mu.Unlock()

	if err == nil {
		err = a.finish(ctx, files)
	}

	a.mu.Lock()
	a.releaseOutLocked()
	if err == nil {
		a.state = stateCommitted
		spools := a.takeSpoolsLocked()
		a.mu.Unlock()
		return closeSpools(spools)
	}
	a.state = stateClosed
	spools := a.takeSpoolsLocked()
	a.mu.Unlock()
	return errors.Join(err, closeSpools(spools), a.discardOutput())
}

// finish writes the metadata files and the trailer and puts the file in place, unless ctx is
// done first (see CommitContext).
func (a *WritableArchive) finish(ctx context.Context, files []layout.File) error {
	if a.file == nil && a.parts == nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("archive %q: commit abandoned: %w", a.name, err)
		}
	}
	for _, f := range files {
		if _, err := a.tw.WriteFile(f.Name, f.Data); err != nil {
			return fmt.Errorf("archive %q: writing %s: %w", a.name, f.Name, err)
		}
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("archive %q: %w", a.name, err)
	}
	if a.compressor != nil {
		err := a.compressor.Close()
		a.compressor = nil
		if err != nil {
			return fmt.Errorf("archive %q: compressing: %w", a.name, err)
		}
	}
	if a.parts != nil {
		if err := a.parts.place(ctx, a.overwrite); err != nil {
			return fmt.Errorf("archive %q: %w", a.name, err)
		}
		return nil
	}
	if a.file == nil {
		return nil
	}
	if err := a.file.Chmod(outputMode(a.path, a.overwrite)); err != nil {
		return fmt.Errorf("archive %q: %w", a.name, err)
	}
	if err := a.file.Sync(); err != nil {
		return fmt.Errorf("archive %q: syncing: %w", a.name, err)
	}
	tmp := a.file.Name()
	err := a.file.Close()
	a.file = nil
	if err == nil {
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("commit abandoned before the rename: %w", err)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("archive %q: %w", a.name, err)
	}
	if err := placeFile(tmp, a.path, a.overwrite); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("archive %q: %w", a.name, err)
	}
	syncDir(a.path)
	return nil
}

// syncDir makes a rename to path durable. Some file systems cannot sync a directory; the
// file is in place either way, so this is best effort.
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// placeFile renames tmp to path; without overwrite it refuses to replace a file that appeared
// since Create, using a hard link where the file system has them.
func placeFile(tmp, path string, overwrite bool) error {
	if overwrite {
		return os.Rename(tmp, path)
	}
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, fs.ErrExist):
		return ErrExists
	}
	// No hard links here: check, then rename.
	if _, err := os.Lstat(path); err == nil {
		return ErrExists
	}
	return os.Rename(tmp, path)
}

// Close releases the archive. Unless it was committed, it removes the temp file (Create) or
// cuts the output back to where it started (NewWriter on a file), so nothing is left behind.
// It is idempotent.
func (a *WritableArchive) Close() error {
	a.mu.Lock()
	for a.outBusy {
		a.idle.Wait()
	}
	if a.state == stateCommitted || a.state == stateClosed {
		a.mu.Unlock()
		return nil
	}
	a.state = stateClosed
	spools := a.takeSpoolsLocked()
	a.mu.Unlock()
	return errors.Join(closeSpools(spools), a.discardOutput())
}

func (a *WritableArchive) takeSpoolsLocked() []*tarfile.SpooledBlob {
	var out []*tarfile.SpooledBlob
	for _, m := range a.members {
		if m.spool != nil {
			out = append(out, m.spool)
			m.spool = nil
		}
	}
	return out
}

func closeSpools(spools []*tarfile.SpooledBlob) error {
	var errs []error
	for _, s := range spools {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// discardOutput removes what was written: the temp file, or a file output cut back.
func (a *WritableArchive) discardOutput() error {
	if a.compressor != nil {
		// Stops its workers. On a stream the bytes already sent stay sent; a temp file is
		// removed below.
		_ = a.compressor.Close()
		a.compressor = nil
	}
	if a.parts != nil {
		err := a.parts.discard()
		a.parts = nil
		return err
	}
	if a.file != nil {
		tmp := a.file.Name()
		err := a.file.Close()
		a.file = nil
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if a.path == "" && a.tw.Seekable() && a.tw.Err() == nil && a.tw.Offset() > 0 {
		return a.tw.CutBack(0)
	}
	return nil
}

// metadataLocked builds manifest.json, repositories and, in LayoutOCI, oci-layout and
// index.json from the committed images in reference order.
func (a *WritableArchive) metadataLocked() ([]layout.File, error) {
	return layout.Compose(a.imagesLocked(), a.layout == LayoutOCI)
}

// imagesLocked lists the committed images as the metadata lists them: one per config, in the
// order of its first reference, with the tags of all its references in order; a tag given to
// several images stays with the last reference that gave it.
func (a *WritableArchive) imagesLocked() []layout.Image {
	type entry struct {
		img  *imageRecord // of the first reference; the others' only add tags and manifests
		tags []distref.NamedTagged
		all  []*imageRecord // every reference's record, for their manifests (LayoutOCI)
	}
	type tagOwner struct {
		e   *entry
		img *imageRecord
	}
	var entries []*entry
	byConfig := map[digest.Digest]*entry{}
	owner := map[string]tagOwner{} // tag → the image of the last reference that gave it
	for _, s := range a.slots {
		if s.state != slotCommitted {
			continue
		}
		e := byConfig[s.image.configDigest]
		if e == nil {
			e = &entry{img: s.image}
			byConfig[s.image.configDigest] = e
			entries = append(entries, e)
		}
		e.all = append(e.all, s.image)
		for _, t := range s.tags {
			if !slices.ContainsFunc(e.tags, func(x distref.NamedTagged) bool { return x.String() == t.String() }) {
				e.tags = append(e.tags, t)
			}
			owner[t.String()] = tagOwner{e, s.image}
		}
	}
	out := make([]layout.Image, 0, len(entries))
	for _, e := range entries {
		img := e.img.layoutImage()
		for _, t := range e.tags {
			if o := owner[t.String()]; o.e == e {
				img.Tags = append(img.Tags, layout.Tag{Name: t, Manifest: o.img.manifestDescriptor()})
			}
		}
		for _, r := range e.all {
			img.Manifests = append(img.Manifests, r.manifestDescriptor())
		}
		out = append(out, img)
	}
	return out
}

// layoutImage is img's config, layers and top id for the metadata.
func (img *imageRecord) layoutImage() layout.Image {
	out := layout.Image{Config: img.configName, TopID: img.topID}
	for _, l := range img.layers {
		out.Layers = append(out.Layers, layout.Layer{
			Name:   l.name,
			DiffID: l.diffID,
			Blob:   imgspecv1.Descriptor{MediaType: l.mediaType, Digest: l.digest, Size: l.size},
		})
	}
	return out
}

// manifestDescriptor describes the manifest img was written with (LayoutOCI).
func (img *imageRecord) manifestDescriptor() imgspecv1.Descriptor {
	return imgspecv1.Descriptor{MediaType: img.manifestType, Digest: img.manifestDigest, Size: int64(len(img.manifest))}
}

// legacyMembers returns the pre-1.10 Docker directories of an image (see layout.LegacyDirs)
// as members, and the top layer's v1 id.
func legacyMembers(config []byte, configDigest digest.Digest, diffIDs []digest.Digest) ([]*member, string, error) {
	files, top, err := layout.LegacyDirs(config, configDigest, diffIDs)
	if err != nil {
		return nil, "", err
	}
	out := make([]*member, len(files))
	for i, f := range files {
		out[i] = &member{name: f.Name, data: f.Data, link: f.Link, isLink: f.Link != ""}
	}
	return out, top, nil
}
