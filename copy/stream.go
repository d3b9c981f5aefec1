package copy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/memory"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/chunked/toc"

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
// archive.ErrTooLarge: nothing is ever spooled to disk. Other functions refuse it.
func WithStreamMemory(n int64) Option {
	return func(o *options) {
		o.mark("WithStreamMemory", forStream)
		o.streamMemory = n
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
// (docker://HOST[/PREFIX]); dir: is ErrStreamUnsupported.
//
// Layers are hashed and sent to the destination while they pass — compressed on the way when
// the destination wants compressed layers, as containers/image's copy does — into the
// layout's shared blobs/ directory, or into a staging repository of the registry (see
// WithStagingRepository) from which each image's repositories mount them. Metadata is kept in
// memory (see WithStreamMemory). Once the archive has been read, the images are worked out as
// Load works them out; each selected one is verified (every layer against its digest and its
// config's diffID, the config against the image ID) and gets its config and manifest at every
// destination reference. The configs and manifests are the ones Load writes, byte for byte,
// for the same archive and options (except where the destination already holds the
// uncompressed form of a layer: copy.Image then reuses it as is, LoadStream sends the
// compressed form). If the archive cannot be read to its end, no image is written; layers
// already sent stay in the layout's blobs/ or the staging repository.
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
	rd, err := tarfile.ReadStream(rctx, name, r, tarfile.StreamOptions{
		Limits:  tarfile.Limits{MaxStreamMemory: o.streamMemory},
		Forward: st.forward,
	})
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
		results[i], refs[i] = o.planLoad(dest, name, img.Index, img.ID, img.Tags)
	}
	finish := func(ctx context.Context, i int) {
		res := &results[i]
		if res.Err != nil {
			kind := ImageFailed
			if res.Skipped {
				kind = ImageSkipped
			}
			run.emit(Event{Kind: kind, Image: res.Index, Source: res.Source, Err: res.Err})
			return
		}
		run.emit(Event{Kind: ImageStarted, Image: res.Index, Source: res.Source})
		if err := st.finish(ctx, picked[i], refs[i], res); err != nil {
			res.Err = err
			run.emit(Event{Kind: ImageFailed, Image: res.Index, Source: res.Source, Err: err})
			return
		}
		run.emit(Event{Kind: ImageDone, Image: res.Index, Source: res.Source})
	}
	if dest.transport == "oci" {
		// Every reference to an OCI layout rewrites its index.json on Commit: one at a time.
		for i := range picked {
			finish(ctx, i)
		}
	} else {
		parallelAfterFirst(ctx, len(picked), o.parallel, finish)
	}
	return results, joinErrors(results)
}

// stager sends layers to the destination as the archive streams past and, at the end,
// writes each image: it stands in for containers/image's copy.Image, which needs a source it
// can read blobs from when it wants them.
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

	rd     *tarfile.Reader // set once the archive has been read
	source string          // the archive, as results name it

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
	// alg is the compression of the blob sent (nil: none); annotations those the compressor
	// produced (zstd:chunked).
	alg         *compressiontypes.Algorithm
	annotations map[string]string
	err         error
}

// blobOp is what happened to a layer on its way, as containers/image's copy decides it.
type blobOp int

const (
	opPreserveUncompressed blobOp = iota
	opPreserveCompressed
	opCompress   // an uncompressed layer, compressed for the destination
	opRecompress // compressed in another format than the one requested
)

func newStager(ctx context.Context, run *run, dest Destination) (*stager, error) {
	sys := run.sys()
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

// forward is tarfile.StreamOptions.Forward: it sends one member to the staging destination.
func (st *stager) forward(m tarfile.Member, stored tarfile.Compression, body io.Reader) {
	s := &staged{}
	s.once.Do(func() { st.put(s, m, stored, body) })
	st.mu.Lock()
	st.staged[m.Offset] = s
	st.mu.Unlock()
}

// blob returns the staged blob of a layer member, sending it now if it was kept in memory.
func (st *stager) blob(m tarfile.Member) *staged {
	st.mu.Lock()
	s, ok := st.staged[m.Offset]
	if !ok {
		s = &staged{}
		st.staged[m.Offset] = s
	}
	st.mu.Unlock()
	s.once.Do(func() {
		data, ok := st.rd.KeptData(m)
		f, fok := st.rd.StreamFacts(m)
		if !ok || !fok {
			s.err = fmt.Errorf("%w: member %q is not in the stream", tarfile.ErrMemberNotFound, m.Name)
			return
		}
		st.put(s, m, f.Compression, bytes.NewReader(data))
	})
	return s
}

// put sends a member's bytes to the staging destination as containers/image's copy would
// send the blob an archive source serves for it: xz and bzip2 members decompressed (no media
// type describes them), then compressed if the destination wants compressed layers and the
// blob is not, or recompressed if another format was requested.
func (st *stager) put(s *staged, m tarfile.Member, stored tarfile.Compression, body io.Reader) {
	size := m.Size
	if stored == tarfile.Xz || stored == tarfile.Bzip2 {
		dec, closeDec, err := tarfile.Decompress(body, stored)
		if err != nil {
			s.err = fmt.Errorf("member %q: %w", m.Name, err)
			return
		}
		defer closeDec()
		body, size = dec, -1
	}
	format, decompressor, body, err := compression.DetectCompressionFormat(body)
	if err != nil {
		s.err = fmt.Errorf("member %q: %w", m.Name, err)
		return
	}
	compressed := decompressor != nil
	var compressTo *compressiontypes.Algorithm
	switch {
	case st.compress && !compressed:
		s.op, compressTo = opCompress, st.requested
		if compressTo == nil {
			compressTo = &compression.Gzip
		}
	case st.compress && compressed && st.requested != nil &&
		st.requested.Name() != format.Name() && st.requested.Name() != format.BaseVariantName():
		s.op, compressTo = opRecompress, st.requested
		dec, closeDec, err := tarfile.Decompress(body, ourCompression(format))
		if err != nil {
			s.err = fmt.Errorf("member %q: %w", m.Name, err)
			return
		}
		defer closeDec()
		body = dec
	case compressed:
		s.op, s.alg = opPreserveCompressed, &format
	default:
		s.op = opPreserveUncompressed
	}
	body = sourceReader{body}
	var wait func()
	if compressTo != nil {
		s.alg, s.annotations, size = compressTo, map[string]string{}, -1
		pr, pw := io.Pipe()
		done := make(chan struct{})
		src := body
		go func() {
			defer close(done)
			_ = pw.CloseWithError(st.compressStream(pw, src, s.annotations, *compressTo, st.level))
		}()
		body = pr
		// The compressor must be done with its input before put returns: the input belongs to
		// the stream reader once Forward has returned.
		wait = func() {
			_ = pr.Close()
			<-done
		}
	}
	info, err := st.staging.PutBlob(st.ctx, st.progress(body), types.BlobInfo{Size: size}, st.cache, false)
	if wait != nil {
		wait()
	}
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

// compressStream is containers/image's copy.doCompression: the same compressor and level,
// so that a layer compresses to the same bytes (and digest) as copy.Image makes. Gzip
// writers are reused from one layer to the next (see gzipWriters).
func (st *stager) compressStream(dest io.Writer, src io.Reader, metadata map[string]string, alg compressiontypes.Algorithm, level *int) error {
	if alg.Name() == compressiontypes.GzipAlgorithmName {
		return st.gzip.compress(dest, src, level)
	}
	c, err := compression.CompressStreamWithMetadata(dest, metadata, alg, level)
	if err != nil {
		return err
	}
	return copyAndClose(c, src, make([]byte, 1<<20))
}

// ourCompression maps a containers/image algorithm to tarfile's.
func ourCompression(a compressiontypes.Algorithm) tarfile.Compression {
	switch a.BaseVariantName() {
	case compressiontypes.GzipAlgorithmName:
		return tarfile.Gzip
	case compressiontypes.ZstdAlgorithmName:
		return tarfile.Zstd
	case compressiontypes.XzAlgorithmName:
		return tarfile.Xz
	case compressiontypes.Bzip2AlgorithmName:
		return tarfile.Bzip2
	}
	return tarfile.Uncompressed
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

// finish verifies one image and writes it to each of its references, the way copy.Image
// would have from an archive source: layers first, then the config, then the manifest.
func (st *stager) finish(ctx context.Context, img *tarfile.Image, refs []types.ImageReference, res *Result) error {
	if err := img.VerifyStreamed(); err != nil {
		return err
	}
	tres, err := img.Resolve()
	if err != nil {
		return err
	}
	sel, _ := reference.IndexSelector(img.Index)
	srcRef, err := reference.New(st.rd.Name(), sel)
	if err != nil {
		srcRef = reference.Reference{} // "-" and paths with a colon have no string form
	}
	src := &memSource{ref: archive.NewReference(srcRef), manifest: tres.Manifest, mimeType: tres.ManifestType, config: tres.Config, configDigest: img.ID}
	unparsed := image.UnparsedInstance(src, nil)
	// A policy context of this image's own: a PolicyContext is not safe for concurrent use.
	pc, err := signature.NewPolicyContext(st.run.policy)
	if err != nil {
		return err
	}
	allowed, err := pc.IsRunningImageAllowed(ctx, unparsed)
	_ = pc.Destroy()
	if !allowed || err != nil {
		return fmt.Errorf("source image rejected: %w", err)
	}
	layers := make([]*staged, len(tres.Layers))
	for j, l := range tres.Layers {
		s := st.blob(l.Member)
		if s.err != nil {
			return fmt.Errorf("layer %d %q: %w", j, l.Name, s.err)
		}
		layers[j] = s
		res.Bytes += l.Member.Size
	}
	res.Bytes += int64(len(tres.Config))
	var chosen *written
	for i, ref := range refs {
		err := func() error {
			d, err := ref.NewImageDestination(ctx, st.sys)
			if err != nil {
				return err
			}
			defer d.Close()
			for j, s := range layers {
				ok, _, err := d.TryReusingBlob(ctx, s.blob, st.cache, false)
				if err != nil {
					return fmt.Errorf("layer %d %q: %w", j, tres.Layers[j].Name, err)
				}
				if !ok {
					return fmt.Errorf("layer %d %q: blob %s was sent to %s but cannot be reused at %s", j, tres.Layers[j].Name, s.blob.Digest, refString(st.staging.Reference()), refString(ref))
				}
			}
			if chosen == nil {
				if chosen, err = st.putImage(ctx, d, unparsed, tres, layers); err != nil {
					return err
				}
			} else if err := chosen.put(ctx, d, st.cache); err != nil {
				return err
			}
			return d.Commit(ctx, unparsed)
		}()
		if err != nil {
			return fmt.Errorf("copying %s to %s: %w", res.Source, refString(ref), err)
		}
		res.Destinations = append(res.Destinations, refString(ref))
		if i == 0 {
			res.Manifest, _ = manifest.Digest(chosen.manifest)
			res.ImageID = chosen.config.Digest
		}
	}
	return nil
}

// written is the config and manifest written for an image, as its other references get them.
type written struct {
	config     types.BlobInfo
	configBlob []byte
	manifest   []byte
}

func (w *written) put(ctx context.Context, d types.ImageDestination, cache types.BlobInfoCache) error {
	if _, err := d.PutBlob(ctx, bytes.NewReader(w.configBlob), w.config, cache, true); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := d.PutManifest(ctx, w.manifest, nil); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// putImage works out the config and manifest copy.Image would write to d — the source's
// manifest with each layer's new digest, size and media type, converted to a type d supports
// (which, from Docker schema2 to OCI, converts the config too) — and writes them, trying the
// other candidate manifest types when d rejects one, as copy.Image does.
func (st *stager) putImage(ctx context.Context, d types.ImageDestination, unparsed *image.UnparsedImage, tres *tarfile.Resolved, layers []*staged) (*written, error) {
	srcImg, err := image.FromUnparsedImage(ctx, st.sys, unparsed)
	if err != nil {
		return nil, err
	}
	srcInfos := srcImg.LayerInfos()
	if len(srcInfos) != len(layers) {
		return nil, fmt.Errorf("%w: the manifest lists %d layers, the image has %d", tarfile.ErrInvalidManifest, len(srcInfos), len(layers))
	}
	parsed, err := manifest.FromBlob(tres.Manifest, tres.ManifestType)
	if err != nil {
		return nil, err
	}
	destInfos := make([]types.BlobInfo, len(layers))
	for j, s := range layers {
		if s.op == opCompress || s.op == opRecompress {
			mt := srcInfos[j].MediaType
			if c, ok := parsed.(interface{ CanChangeLayerCompression(string) bool }); ok && !c.CanChangeLayerCompression(mt) {
				return nil, fmt.Errorf("%w: layer %d has media type %q, whose compression cannot be changed, but it was compressed for the destination", ErrStreamUnsupported, j, mt)
			}
		}
		destInfos[j], err = destBlobInfo(srcInfos[j], s)
		if err != nil {
			return nil, err
		}
	}
	updates := types.ManifestUpdateOptions{InformationOnly: types.ManifestUpdateInformation{Destination: d, LayerInfos: destInfos}}
	if !slices.EqualFunc(srcInfos, destInfos, func(a, b types.BlobInfo) bool { return a.Digest == b.Digest }) {
		updates.LayerInfos = destInfos
	}
	candidates, err := manifestCandidates(tres.ManifestType, d.SupportedManifestMIMETypes(), st.requested)
	if err != nil {
		return nil, err
	}
	srcType := manifest.NormalizedMIMEType(tres.ManifestType)
	var errs []error
	for _, mt := range candidates {
		u := updates
		if mt != srcType {
			u.ManifestMIMEType = mt
		}
		pending := srcImg
		if u.LayerInfos != nil || u.ManifestMIMEType != "" {
			if pending, err = srcImg.UpdatedImage(ctx, u); err != nil {
				if _, ok := errors.AsType[manifest.ManifestLayerCompressionIncompatibilityError](err); ok {
					errs = append(errs, fmt.Errorf("%s: %w", mt, err))
					continue
				}
				return nil, fmt.Errorf("creating an updated image manifest: %w", err)
			}
		}
		w := &written{config: pending.ConfigInfo()}
		if w.manifest, _, err = pending.Manifest(ctx); err != nil {
			return nil, err
		}
		if w.configBlob, err = pending.ConfigBlob(ctx); err != nil {
			return nil, err
		}
		err := w.put(ctx, d, st.cache)
		if err == nil {
			return w, nil
		}
		if _, ok := errors.AsType[types.ManifestTypeRejectedError](err); !ok {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", mt, err))
	}
	return nil, fmt.Errorf("writing manifest failed for every type: %w", errors.Join(errs...))
}

// destBlobInfo is the BlobInfo copy.Image hands to UpdatedImage for a layer it uploaded:
// the uploaded digest and size, and the compression edit that sets the media type.
func destBlobInfo(src types.BlobInfo, s *staged) (types.BlobInfo, error) {
	out := types.BlobInfo{Digest: s.blob.Digest, Size: s.blob.Size, Annotations: map[string]string{}}
	switch s.op {
	case opCompress, opRecompress:
		out.CompressionOperation, out.CompressionAlgorithm = types.Compress, s.alg
		if s.op == opRecompress {
			out.CompressionOperation = types.PreserveOriginal
		}
		for k, v := range s.annotations {
			out.Annotations[k] = v
		}
		return out, nil
	}
	out.MediaType = src.MediaType
	for k, v := range src.Annotations {
		out.Annotations[k] = v
	}
	if s.op == opPreserveUncompressed {
		out.CompressionOperation = types.Decompress
		return out, nil
	}
	out.CompressionOperation, out.CompressionAlgorithm = types.PreserveOriginal, s.alg
	if s.alg != nil && s.alg.Name() == compressiontypes.ZstdAlgorithmName {
		// copy.Image calls a zstd layer that carries a TOC digest zstd:chunked.
		d, err := toc.GetTOCDigest(src.Annotations)
		if err != nil {
			return types.BlobInfo{}, err
		}
		if d != nil {
			out.CompressionAlgorithm = &compression.ZstdChunked
		}
	}
	return out, nil
}

// manifestCandidates orders the manifest types to try, as copy.Image does: the source's own
// type if the destination supports it, then Docker schema2, then whatever else the
// destination lists. A requested zstd compression restricts the choice to OCI.
func manifestCandidates(srcType string, destTypes []string, requested *compressiontypes.Algorithm) ([]string, error) {
	srcType = manifest.NormalizedMIMEType(srcType)
	if len(destTypes) == 0 {
		destTypes = []string{imgspecv1.MediaTypeImageManifest, manifest.DockerV2Schema2MediaType, manifest.DockerV2Schema1SignedMediaType, manifest.DockerV2Schema1MediaType}
	}
	supported := func(t string) bool {
		if !slices.Contains(destTypes, t) {
			return false
		}
		if requested == nil || requested.Name() == compressiontypes.GzipAlgorithmName {
			return true
		}
		return (requested.Name() == compressiontypes.ZstdAlgorithmName || requested.Name() == compressiontypes.ZstdChunkedAlgorithmName) &&
			t == imgspecv1.MediaTypeImageManifest
	}
	var out []string
	for _, t := range append([]string{srcType, manifest.DockerV2Schema2MediaType, manifest.DockerV2Schema1SignedMediaType}, destTypes...) {
		if supported(t) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no manifest type of the destination (%v) can describe the layers", ErrInvalidDestination, destTypes)
	}
	return out, nil
}

// memSource serves an image's manifest and config from memory: what containers/image's
// image package needs to update and convert a manifest. Layers are not served; they are at
// the destination already.
type memSource struct {
	ref          types.ImageReference
	manifest     []byte
	mimeType     string
	config       []byte
	configDigest digest.Digest
}

var _ types.ImageSource = (*memSource)(nil)

func (s *memSource) Reference() types.ImageReference { return s.ref }
func (s *memSource) Close() error                    { return nil }

func (s *memSource) GetManifest(ctx context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if instanceDigest != nil {
		return nil, "", fmt.Errorf("%w: no manifest %s (the image is not a manifest list)", archive.ErrImageNotFound, *instanceDigest)
	}
	return s.manifest, s.mimeType, nil
}

func (s *memSource) HasThreadSafeGetBlob() bool { return true }

func (s *memSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest != s.configDigest {
		return nil, 0, fmt.Errorf("%w: blob %s of a streamed archive is only at the destination", archive.ErrMemberNotFound, info.Digest)
	}
	return io.NopCloser(bytes.NewReader(s.config)), int64(len(s.config)), nil
}

func (s *memSource) GetSignatures(ctx context.Context, instanceDigest *digest.Digest) ([][]byte, error) {
	return nil, nil
}

func (s *memSource) LayerInfosForCopy(ctx context.Context, instanceDigest *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}
