package copy

import (
	"context"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
)

// An OCI layout destination wants compressed layers, and an archive's layers are mostly
// uncompressed, so copy.Image compresses each layer on its way in. containers/image's oci:
// destination only reuses a blob whose digest it is asked about, the uncompressed one, which
// it never has: every image compresses its base layers again (12 images sharing 3 base
// layers: 12 compressions of each base layer). ociReuse remembers the compressed blobs one
// Load wrote into the layout and offers them, through copy.Image's blob substitution, to the
// later images that use the same uncompressed layer. copy.Image then records the compressed
// digest and media type in the image's manifest, exactly as if it had compressed the layer
// again (compression is deterministic: it would have produced the same blob).

// ociReuse is shared by the destinations of one Load into one layout.
type ociReuse struct {
	mu      sync.Mutex
	written []digest.Digest // layers this Load compressed into the layout, in order
}

func (r *ociReuse) add(d digest.Digest) {
	r.mu.Lock()
	r.written = append(r.written, d)
	r.mu.Unlock()
}

func (r *ociReuse) list() []digest.Digest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]digest.Digest(nil), r.written...)
}

// ociReuseRef is an oci: destination reference whose image destinations share r.
type ociReuseRef struct {
	types.ImageReference
	r *ociReuse
}

func (ref ociReuseRef) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	d, err := ref.ImageReference.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, err
	}
	// Substituting needs to know the algorithm copy.Image compresses with. Only plain gzip
	// (the default) is handled: zstd:chunked blobs carry annotations a substitute would lose.
	if sys != nil && sys.CompressionFormat != nil && sys.CompressionFormat.Name() != compression.Gzip.Name() {
		return d, nil
	}
	return &ociReuseDest{ImageDestination: d, r: ref.r}, nil
}

type ociReuseDest struct {
	types.ImageDestination
	r *ociReuse
}

var _ types.ImageDestination = (*ociReuseDest)(nil)

// PutBlob remembers the layers copy.Image compressed on the fly: it passes those without a
// digest, and they are gzip (see NewImageDestination). Layers stored as they came (with their
// digest) are found by the destination itself.
func (d *ociReuseDest) PutBlob(ctx context.Context, stream io.Reader, info types.BlobInfo, cache types.BlobInfoCache, isConfig bool) (types.BlobInfo, error) {
	bi, err := d.ImageDestination.PutBlob(ctx, stream, info, cache, isConfig)
	if err == nil && !isConfig && info.Digest == "" {
		d.r.add(bi.Digest)
	}
	return bi, err
}

// TryReusingBlob asks the layout first; failing that, when substitution is allowed, it offers
// a gzip blob this Load wrote whose uncompressed digest (as copy.Image recorded it in the
// blob info cache) is the one asked for.
func (d *ociReuseDest) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	ok, bi, err := d.ImageDestination.TryReusingBlob(ctx, info, cache, canSubstitute)
	if err != nil || ok || !canSubstitute || cache == nil {
		return ok, bi, err
	}
	for _, c := range d.r.list() {
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
	return false, types.BlobInfo{}, nil
}
