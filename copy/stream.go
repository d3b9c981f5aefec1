package copy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/memory"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// DefaultStagingRepository is where LoadStream uploads layers in a registry, under the
// destination's prefix, before it knows the images' names (see WithStagingRepository).
const DefaultStagingRepository = "darc-staging"

// WithSourceName names the archive LoadStream reads, for results and messages (default "-").
// Other functions refuse it.
func WithSourceName(name string) Option {
	return func(o *options) {
		o.mark("WithSourceName", forStream)
		o.sourceName = name
	}
}

// WithStreamMemory bounds the metadata LoadStream keeps in memory while it reads (manifest.json,
// configs, index.json, OCI manifests, tiny members); default 64 MiB. Past it the load fails with
// archive.ErrTooLarge: nothing is ever spooled to disk. It must be at least 1. Other
// functions refuse it.
func WithStreamMemory(n int64) Option {
	return func(o *options) {
		o.mark("WithStreamMemory", forStream)
		o.streamMemory, o.streamMemorySet = n, true
	}
}

// WithStagingRepository sets the repository, under a registry destination's prefix, that
// LoadStream uploads layers to as they pass (default DefaultStagingRepository); every image's
// repository then mounts them from there. The staging repository keeps links to the layers.
// Other functions refuse it.
func WithStagingRepository(path string) Option {
	return func(o *options) {
		o.mark("WithStagingRepository", forStream)
		o.staging = path
	}
}

// LoadStream loads images from an archive read once, front to back, from r: plain or with
// whole-archive gzip, zstd, xz or bzip2 compression, detected from its first bytes and
// decompressed on the fly. Nothing is written to a temp file. The destination must accept
// blobs before it knows their images: an OCI layout (oci:DIR) or a registry
// (docker://HOST[/PREFIX]); dir: is ErrStreamUnsupported, and so is a system context asking
// for zstd:chunked compression (the table of contents of a layer would be lost).
//
// Layers are hashed and sent to the destination while they pass — compressed on the way when
// the destination wants compressed layers, as containers/image's copy does — into the
// layout's shared blobs/ directory, or into a staging repository of the registry (see
// WithStagingRepository) from which each image's repositories mount them. Metadata is kept in
// memory (see WithStreamMemory). Once the archive has been read, the images are worked out as
// Load works them out; each selected one is verified (every layer against its digest and its
// config's diffID, the config against the image ID) and copied to every destination reference
// by containers/image's copy.Image, from a source holding only its manifest and config: each
// layer is offered to copy.Image as a blob the destination already has, as it was sent. So
// the configs and manifests are the ones Load writes, byte for byte, for the same archive and
// options. If the archive cannot be read to its end, no image is written; layers already sent
// stay in the layout's blobs/ or the staging repository.
//
// Progress (WithProgress) reports the stream itself as image -1: ImageStarted, BlobProgress
// events whose Offset is the number of bytes sent to the destination so far, then ImageDone
// (or ImageFailed) when the archive has been read; then the images' events as with Load.
//
// Selectors, names (WithNames, WithBaseNameOnly), untagged images and Results behave as in
// Load; Result.Bytes is the size of the image's layers as stored plus its config. The layers
// of images that are not selected are sent too, since an image's layers are only known at the
// end: with selectors, blobs of unselected images stay in the layout (unreferenced) or in the
// staging repository. A failed image does not stop the others; the error joins every failure.
func LoadStream(ctx context.Context, r io.Reader, dest Destination, selectors []reference.Selector, opts ...Option) ([]Result, error) {
	o, err := makeOptionsFor(opts, forStream)
	if err != nil {
		return nil, err
	}
	if dest.transport != "docker" && dest.transport != "oci" {
		return nil, fmt.Errorf("%w: %s: a single pass needs a registry or an OCI layout; use Load", ErrStreamUnsupported, dest)
	}
	if o.platform != nil || o.platforms != nil {
		// Which manifests the platforms pick is known once the manifest list is read, at the
		// end of the archive: a platform other than manifest.json's may have been kept in
		// memory only in part by then.
		return nil, fmt.Errorf("%w: choosing platforms needs the whole archive; use Load", ErrStreamUnsupported)
	}
	run := newRun(o)
	defer run.close()
	name := o.sourceName
	if name == "" {
		name = "-"
	}
	// The first failure of the destination stops the reading: it would fail every layer.
	rctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	st, err := newStager(rctx, run, dest)
	if err != nil {
		return nil, err
	}
	defer st.close()
	st.abort = abort
	st.source = fmt.Sprintf("%s:%s", reference.Transport, name)
	run.emit(Event{Kind: ImageStarted, Image: -1, Source: st.source})
	var ropts []archive.StreamOption
	if o.streamMemorySet {
		ropts = append(ropts, archive.WithMaxStreamMemory(o.streamMemory))
	}
	rd, err := archive.ReadStream(rctx, name, r, st.forward, ropts...)
	if err != nil {
		if cause := context.Cause(rctx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("archive %q: %w", name, cause)
		}
		run.emit(Event{Kind: ImageFailed, Image: -1, Source: st.source, Err: err})
		return nil, err
	}
	st.rd = rd
	st.abort = nil // from here on, a failure is one image's
	run.emit(Event{Kind: ImageDone, Image: -1, Source: st.source, Offset: st.sent.Load(), Size: st.sent.Load()})

	picked, err := rd.SelectEach(selectors)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(picked))
	refs := make([][]types.ImageReference, len(picked))
	for i, img := range picked {
		results[i], refs[i] = o.planLoad(dest, name, img.ImageInfo)
		if img.List != nil && results[i].Err == nil {
			planListOf(img.List, &results[i])
		}
	}
	finish := func(ctx context.Context, i int) {
		res := &results[i]
		run.track(res, func() error { return st.finish(ctx, picked[i], refs[i], res) })
	}
	parallelAfterFirst(ctx, len(picked), dest.parallel(o.parallel), finish)
	return results, joinErrors(results)
}

// stager sends layers to the destination as the archive streams past, the one thing
// containers/image's copy.Image cannot do (it reads a blob from its source when it wants it,
// and a stream has passed by then), and, at the end, has copy.Image write each image from
// what was sent (see finish).
type stager struct {
	// ctx is the reading's: abort cancels it, with the destination's error as the cause.
	ctx   context.Context
	abort context.CancelCauseFunc
	run   *run
	sys   *types.SystemContext
	dest  Destination
	// staging receives every layer: the OCI layout itself (its blobs/ is shared by all its
	// references), or the registry's staging repository.
	staging types.ImageDestination
	// cache knows where staged blobs are and how they are compressed, so that a registry
	// destination mounts them instead of wanting them uploaded.
	cache types.BlobInfoCache
	// What containers/image's copy would do to a layer: compress it when the destination
	// wants compressed layers, with the requested algorithm (nil: gzip) and level.
	compress  bool
	requested *compressiontypes.Algorithm
	level     *int
	gzip      gzipWriters

	rd     *archive.StreamedArchive // set once the archive has been read
	source string                   // the archive, as results name it

	sent         atomic.Int64 // bytes sent to the destination so far
	mu           sync.Mutex
	lastProgress time.Time
	staged       map[int64]*staged // by member offset
}

// staged is one member as it went to the destination.
type staged struct {
	once sync.Once // for members kept in memory, sent when an image first needs them
	blob types.BlobInfo
	op   blobOp
	alg  *compressiontypes.Algorithm // the compression of the blob sent (nil: none)
	err  error
}

func newStager(ctx context.Context, run *run, dest Destination) (*stager, error) {
	sys := run.sys()
	if c := sys.CompressionFormat; c != nil && c.Name() == compressiontypes.ZstdChunkedAlgorithmName {
		// Each image's layers reach copy.Image as reused blobs, and containers/image drops
		// the annotations of a reused blob, which for zstd:chunked carry its table of contents.
		return nil, fmt.Errorf("%w: %s: layers compressed as %s", ErrStreamUnsupported, dest, c.Name())
	}
	var ref types.ImageReference
	var err error
	if dest.transport == "oci" {
		ref, err = ocilayout.NewReference(dest.dir, "")
	} else {
		path := run.o.staging
		if path == "" {
			path = DefaultStagingRepository
		}
		n, nerr := dest.dockerName(path, "latest")
		if err = nerr; err == nil {
			ref, err = docker.NewReference(n)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: staging: %w", ErrInvalidDestination, dest, err)
	}
	cache := memory.New()
	if dest.transport == "docker" {
		// Without the compression of a staged blob in the cache, no image's repository would
		// mount it (see bic.go): fail before anything is read or uploaded.
		if err := compressorRecordable(cache); err != nil {
			return nil, fmt.Errorf("%w: %s: layers staged in the registry could not be mounted: recording their compression in containers/image's blob-info cache: %w", ErrStreamUnsupported, dest, err)
		}
	}
	staging, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	return &stager{
		ctx: ctx, run: run, sys: sys, dest: dest, staging: staging, cache: cache,
		compress:  staging.DesiredLayerCompression() == types.Compress,
		requested: sys.CompressionFormat,
		level:     sys.CompressionLevel,
		staged:    map[int64]*staged{},
	}, nil
}

func (st *stager) close() { _ = st.staging.Close() }

// forward is archive.ReadStream's forward function: it sends one member to the staging destination.
func (st *stager) forward(m archive.StreamMember, body io.Reader) {
	s := &staged{}
	s.once.Do(func() { st.put(s, m, body) })
	st.mu.Lock()
	st.staged[m.Offset] = s
	st.mu.Unlock()
}

// blob returns the staged blob of a layer member, sending it now if it was kept in memory.
func (st *stager) blob(m archive.StreamMember) *staged {
	st.mu.Lock()
	s, ok := st.staged[m.Offset]
	if !ok {
		s = &staged{}
		st.staged[m.Offset] = s
	}
	st.mu.Unlock()
	s.once.Do(func() {
		data, ok := st.rd.Kept(m)
		if !ok {
			s.err = fmt.Errorf("%w: member %q is not in the stream", archive.ErrMemberNotFound, m.Name)
			return
		}
		st.put(s, m, bytes.NewReader(data))
	})
	return s
}

// put sends a member's bytes to the staging destination as containers/image's copy would
// send the blob an archive source serves for it: xz and bzip2 members decompressed (no media
// type describes them), and so are zstd members behind a leading skippable frame, then compressed if the destination wants compressed layers and the
// blob is not, or recompressed if another format was requested.
func (st *stager) put(s *staged, m archive.StreamMember, body io.Reader) {
	size := m.Size
	format, decompressor, body, err := compression.DetectCompressionFormat(body)
	if err != nil {
		s.err = fmt.Errorf("member %q: %w", m.Name, err)
		return
	}
	hidden := false
	if decompressor == nil {
		body, hidden = startsWithSkippableFrame(body)
		if hidden {
			decompressor = compression.ZstdDecompressor
		}
	}
	if base := format.BaseVariantName(); hidden || decompressor != nil && base != compressiontypes.GzipAlgorithmName && base != compressiontypes.ZstdAlgorithmName {
		dec, err := decompressor(body)
		if err != nil {
			s.err = fmt.Errorf("member %q: %w", m.Name, err)
			return
		}
		defer dec.Close()
		body, size, decompressor = dec, -1, nil
	}
	s.op, s.alg = planLayer(format, decompressor != nil, st.compress, st.requested)
	if s.op == opRecompress {
		dec, err := decompressor(body)
		if err != nil {
			s.err = fmt.Errorf("member %q: %w", m.Name, err)
			return
		}
		defer dec.Close()
		body = dec
	}
	body = sourceReader{body}
	if s.op == opCompress || s.op == opRecompress {
		// The compressor must be done with its input before put returns: the input belongs
		// to the stream reader once Forward has returned.
		var stop func()
		body, stop = st.gzip.compressing(body, *s.alg, st.level)
		defer stop()
		size = -1
	}
	info, err := st.staging.PutBlob(st.ctx, st.progress(body), types.BlobInfo{Size: size}, st.cache, false)
	if err != nil {
		s.err = fmt.Errorf("member %q: sending to %s: %w", m.Name, st.dest, err)
		if _, bad := errors.AsType[sourceError](err); !bad && st.abort != nil {
			st.abort(s.err)
		}
		return
	}
	if st.dest.transport == "docker" {
		// A blob whose compression is not recorded is not mounted into any image's
		// repository. That is this blob's failure, like a layer that does not decompress:
		// images without it are still written, so the stream goes on (the method itself was
		// checked by newStager, before anything was read).
		if err := recordCompressor(st.cache, info.Digest, s.alg); err != nil {
			s.err = fmt.Errorf("member %q: sent to %s, but cannot be mounted from there: %w", m.Name, refString(st.staging.Reference()), err)
			return
		}
	}
	s.blob = types.BlobInfo{Digest: info.Digest, Size: info.Size}
}

// startsWithSkippableFrame reports whether body starts with a zstd skippable frame (pzstd's
// output), which compression.DetectCompressionFormat takes for uncompressed data; the archive
// serves such a member decompressed. It returns body with nothing consumed.
func startsWithSkippableFrame(body io.Reader) (io.Reader, bool) {
	br := bufio.NewReader(body)
	head, _ := br.Peek(8)
	return br, tarfile.StartsWithSkippableFrame(head)
}

// sourceError marks a failure to read a member (a layer that does not decompress), as
// opposed to a failure of the destination.
type sourceError struct{ err error }

func (e sourceError) Error() string { return e.err.Error() }
func (e sourceError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = sourceError{err}
	}
	return n, err
}

// progress counts a blob's bytes into the bytes sent so far, reported as progress of the
// stream itself (Image -1) at most every progressInterval.
func (st *stager) progress(r io.Reader) io.Reader {
	if st.run.events == nil {
		return r
	}
	return &progressReader{r: r, st: st}
}

type progressReader struct {
	r  io.Reader
	st *stager
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	st := p.st
	total := st.sent.Add(int64(n))
	st.mu.Lock()
	due := time.Since(st.lastProgress) >= progressInterval
	if due {
		st.lastProgress = time.Now()
	}
	st.mu.Unlock()
	if due {
		st.run.emit(Event{Kind: BlobProgress, Image: -1, Source: st.source, Offset: total, Size: -1})
	}
	return n, err
}

// finish verifies one image and copies it to each of its references with copy.Image, from a
// source that serves its manifest and config from memory: every layer is at the destination
// already, and each reference's destination offers it as a reused blob (see stagedDest).
//
// An image that is one platform of a manifest list goes as the list, as Load takes it (see
// planListOf): every manifest the archive holds completely, whose layers were all sent as
// they passed (or, an attestation's, kept in memory), from a source that serves the list,
// its manifests and their configs.
func (st *stager) finish(ctx context.Context, img archive.StreamedImage, refs []types.ImageReference, res *Result) error {
	images := []archive.StreamedImage{img}
	var lc *listCopy
	if img.List != nil {
		images = img.Platforms()
		lc = &listCopy{instances: img.List.Complete, strip: len(img.List.Complete) < img.List.Manifests}
	}
	layers := map[digest.Digest]*staged{}
	var size int64
	for _, one := range images {
		content, err := one.Verify()
		if err != nil {
			return err
		}
		size += content.ConfigSize
		for j, l := range content.Layers {
			s := st.blob(l.Member)
			if s.err != nil {
				return fmt.Errorf("layer %d %q: %w", j, l.Name, s.err)
			}
			if layers[l.Digest] == nil {
				size += l.Member.Size
			}
			layers[l.Digest] = s
		}
	}
	var src types.ImageReference
	var err error
	if lc != nil {
		src, err = img.ListReference(images)
	} else {
		src, err = img.Reference()
	}
	if err != nil {
		return err
	}
	dsts := make([]types.ImageReference, len(refs))
	for i, ref := range refs {
		dsts[i] = stagedRef{ImageReference: ref, st: st, layers: layers}
	}
	err = st.run.copyImage(ctx, src, dsts, res, lc)
	res.Bytes = size
	return err
}

// stagedRef is a destination of one image of a streamed archive, whose layers were sent to
// the destination while the archive was read.
type stagedRef struct {
	types.ImageReference
	st     *stager
	layers map[digest.Digest]*staged // by the digest the image's manifest gives the layer
}

func (ref stagedRef) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	d, err := ref.ImageReference.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, err
	}
	return &stagedDest{ImageDestination: d, ref: ref}, nil
}

// stagedDest offers copy.Image each staged layer as a blob it can reuse, as it was sent: the
// layer's own blob, or the blob compressed for the destination as copy.Image would have.
type stagedDest struct {
	types.ImageDestination
	ref stagedRef
}

var _ types.ImageDestination = (*stagedDest)(nil)

// TryReusingBlob asks the destination first, as copy.Image does; failing that, it makes the
// destination take the staged blob of the layer (an OCI layout finds it in its blobs/, a
// registry mounts it from the staging repository) and reports it as the substitute.
func (d *stagedDest) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	ok, bi, err := d.ImageDestination.TryReusingBlob(ctx, info, cache, canSubstitute)
	s := d.ref.layers[info.Digest]
	if err != nil || ok || s == nil {
		return ok, bi, err
	}
	changed := s.op == opCompress || s.op == opRecompress
	if changed && !canSubstitute {
		return false, types.BlobInfo{}, fmt.Errorf("%w: layer %s has a media type whose compression cannot be changed, but it was compressed for the destination", ErrStreamUnsupported, info.Digest)
	}
	st := d.ref.st
	found, have, err := d.ImageDestination.TryReusingBlob(ctx, s.blob, st.cache, false)
	if err != nil {
		return false, types.BlobInfo{}, err
	}
	if !found {
		return false, types.BlobInfo{}, fmt.Errorf("layer %s: blob %s was sent to %s but cannot be reused at %s", info.Digest, s.blob.Digest, refString(st.staging.Reference()), refString(d.ref.ImageReference))
	}
	out := types.BlobInfo{Digest: s.blob.Digest, Size: have.Size}
	if changed {
		out.CompressionOperation, out.CompressionAlgorithm = types.Compress, s.alg
	}
	return true, out, nil
}
