package copy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
	"go.podman.io/image/v5/types"
)

// OCI layouts and registries want compressed layers, and an archive's layers are mostly
// uncompressed, so copy.Image compresses each layer on its way in. That costs in two ways.
//
// Memory: copy.Image makes a new pgzip writer for every layer, and each writer keeps its own
// pool of megabyte buffers until the garbage collector clears it. That alone took a 12-image
// Load's peak to 150 MB into a layout and 350 MB into a registry. layerReuse compresses a
// layer itself the first time it is needed, with the same compressor at the same level
// (pgzip, so the same bytes), reusing its writers from layer to layer, writes it to the
// destination, and offers it to copy.Image through blob substitution. copy.Image then
// records the compressed digest and media type in the manifest exactly as if it had
// compressed the layer itself.
//
// Work: containers/image's oci: destination only reuses a blob whose digest it is asked
// about, the uncompressed one, which it never has, so every image would compress its base
// layers again (12 images sharing 3 base layers: 12 compressions of each). layerReuse
// remembers the compressed blobs one Load wrote and offers them to the later images that use
// the same uncompressed layer. For a registry, asking about the compressed digest lets the
// destination mount the blob from the repository it went to first.

// layerReuse is shared by the destinations of one Load.
type layerReuse struct {
	mu      sync.Mutex
	written []digest.Digest // layers this Load compressed into the destination, in order
	gzip    gzipWriters
	// busy bounds the layers compressed at once. pgzip spreads one layer over every CPU
	// already; a registry destination would otherwise have copy.Image send up to six layers
	// per image at once, each with a writer of its own.
	busy chan struct{}
}

func newLayerReuse() *layerReuse {
	return &layerReuse{busy: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
}

func (r *layerReuse) add(d digest.Digest) {
	r.mu.Lock()
	r.written = append(r.written, d)
	r.mu.Unlock()
}

func (r *layerReuse) list() []digest.Digest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]digest.Digest(nil), r.written...)
}

// reuseRef is an oci: or docker: destination reference whose image destinations share r. src is
// the image being copied to it, which layers are compressed from; progress, when set, is
// told how far a layer has been read.
type reuseRef struct {
	types.ImageReference
	r        *layerReuse
	src      types.ImageReference
	progress func(blob digest.Digest, done, size int64)
}

func (ref reuseRef) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	d, err := ref.ImageReference.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, err
	}
	// Substituting needs to know the algorithm copy.Image compresses with. Only plain gzip
	// (the default) is handled: zstd:chunked blobs carry annotations a substitute would lose.
	if sys != nil && sys.CompressionFormat != nil && sys.CompressionFormat.Name() != compression.Gzip.Name() {
		return d, nil
	}
	return &reuseDest{ImageDestination: d, ref: ref, sys: sys}, nil
}

type reuseDest struct {
	types.ImageDestination
	ref   reuseRef
	sys   *types.SystemContext
	srcMu sync.Mutex
	src   types.ImageSource // opened when a layer is first compressed here
}

// source opens the source image once. copy.Image may ask about several layers at once
// (a registry destination takes blobs concurrently); the archive's image source serves
// concurrent reads.
func (d *reuseDest) source(ctx context.Context) (types.ImageSource, error) {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	if d.src == nil {
		src, err := d.ref.src.NewImageSource(ctx, d.sys)
		if err != nil {
			return nil, err
		}
		d.src = src
	}
	return d.src, nil
}

// Close closes the source opened for compressing layers, then the destination.
func (d *reuseDest) Close() error {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	var err error
	if d.src != nil {
		err = d.src.Close()
	}
	return errors.Join(d.ImageDestination.Close(), err)
}

var _ types.ImageDestination = (*reuseDest)(nil)

// PutBlob remembers the layers copy.Image compressed on the fly: it passes those without a
// digest, and they are gzip (see NewImageDestination). Layers stored as they came (with their
// digest) are found by the destination itself.
func (d *reuseDest) PutBlob(ctx context.Context, stream io.Reader, info types.BlobInfo, cache types.BlobInfoCache, isConfig bool) (types.BlobInfo, error) {
	bi, err := d.ImageDestination.PutBlob(ctx, stream, info, cache, isConfig)
	if err == nil && !isConfig && info.Digest == "" {
		d.ref.r.add(bi.Digest)
	}
	return bi, err
}

// TryReusingBlob asks the destination first; failing that, when substitution is allowed, it offers
// a gzip blob this Load wrote whose uncompressed digest (as copy.Image recorded it in the
// blob info cache) is the one asked for.
func (d *reuseDest) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	ok, bi, err := d.ImageDestination.TryReusingBlob(ctx, info, cache, canSubstitute)
	if err != nil || ok || !canSubstitute || cache == nil {
		return ok, bi, err
	}
	for _, c := range d.ref.r.list() {
		if c == info.Digest || cache.UncompressedDigest(c) != info.Digest {
			continue
		}
		found, have, err := d.ImageDestination.TryReusingBlob(ctx, types.BlobInfo{Digest: c, Size: -1}, cache, false)
		if err != nil {
			return false, types.BlobInfo{}, err
		}
		if found {
			return true, types.BlobInfo{Digest: c, Size: have.Size, CompressionOperation: types.Compress, CompressionAlgorithm: &compression.Gzip}, nil
		}
	}
	return d.compressFromSource(ctx, info, cache)
}

// compressFromSource compresses the uncompressed layer info names from the source image into
// the destination, records it for the later images, and offers it as the substitute. When the
// source does not serve the layer uncompressed, or the destination takes layers as they are,
// it offers nothing and copy.Image goes on as it would have.
func (d *reuseDest) compressFromSource(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (bool, types.BlobInfo, error) {
	if d.ref.src == nil || d.DesiredLayerCompression() != types.Compress {
		return false, types.BlobInfo{}, nil
	}
	src, err := d.source(ctx)
	if err != nil {
		return false, types.BlobInfo{}, nil // copy.Image opens it too, and reports the error
	}
	select {
	case d.ref.r.busy <- struct{}{}:
		defer func() { <-d.ref.r.busy }()
	case <-ctx.Done():
		return false, types.BlobInfo{}, ctx.Err()
	}
	rc, size, err := src.GetBlob(ctx, types.BlobInfo{Digest: info.Digest, Size: info.Size}, cache)
	if err != nil {
		return false, types.BlobInfo{}, nil
	}
	defer rc.Close()
	format, decompressor, body, err := compression.DetectCompressionFormat(rc)
	if err != nil {
		return false, types.BlobInfo{}, nil // unreadable: copy.Image reports it
	}
	var requested *compressiontypes.Algorithm
	if d.sys != nil {
		requested = d.sys.CompressionFormat
	}
	// Only what copy.Image would compress with gzip is compressed here (see
	// NewImageDestination).
	if op, alg := planLayer(format, decompressor != nil, true, requested); op != opCompress || alg.Name() != compressiontypes.GzipAlgorithmName {
		return false, types.BlobInfo{}, nil
	}
	if progress := d.ref.progress; progress != nil {
		body = &readReporter{r: body, report: func(done int64) { progress(info.Digest, done, size) }}
	}
	var level *int
	if d.sys != nil {
		level = d.sys.CompressionLevel
	}
	compressed, stop := d.ref.r.gzip.compressing(body, compression.Gzip, level)
	bi, err := d.ImageDestination.PutBlob(ctx, compressed, types.BlobInfo{Size: -1}, cache, false)
	stop()
	if err != nil {
		return false, types.BlobInfo{}, fmt.Errorf("layer %s: %w", info.Digest, err)
	}
	cache.RecordDigestUncompressedPair(bi.Digest, info.Digest)
	d.ref.r.add(bi.Digest)
	return true, types.BlobInfo{Digest: bi.Digest, Size: bi.Size, CompressionOperation: types.Compress, CompressionAlgorithm: &compression.Gzip}, nil
}

// readReporter tells report how many bytes have been read after every read that returned
// data.
type readReporter struct {
	r      io.Reader
	done   int64
	report func(done int64)
}

func (p *readReporter) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.report(p.done)
	}
	return n, err
}
