package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// ErrCannotPair means CopyFrom was given references it cannot pair: a destination that is not
// this package's, or a source that is not an image of an open ReadableArchive.
var ErrCannotPair = errors.New("archive: cannot pair the destination with the source")

// CopyFromOption configures CopyFrom.
type CopyFromOption func(*copyFromOptions)

type copyFromOptions struct {
	progress func(blob digest.Digest, done, size int64)
}

// WithCopyProgress has progress called as a blob copied straight from the source is read:
// done of size bytes of the member as stored. It is called from the copying goroutine and
// must not block.
func WithCopyProgress(progress func(blob digest.Digest, done, size int64)) CopyFromOption {
	return func(o *copyFromOptions) { o.progress = progress }
}

// CopyFrom returns dst, a destination reference of this package (from
// WritableArchive.NewReference, or parsed), paired with src, an image of an open
// ReadableArchive (from ReadableArchive.Reference or References), for a copy of src into dst
// with containers/image's copy.Image.
//
// copy.Image asks a destination whether it can reuse each layer before it reads the layer
// from the source. The paired destination answers by copying a layer it lacks straight from
// the source archive's member into its output: read once, hashed once while it is written,
// against the layer's diffID in LayoutDocker (a compressed member is decompressed on the
// way, as that layout stores layers uncompressed) or its stored digest in LayoutOCI. A layer
// the archive already holds is not read at all. Layers it does not copy this way (xz or
// bzip2 members bound for LayoutOCI, or a compressed member when copy.Image does not allow
// substituting its uncompressed form) go through copy.Image as usual.
//
// The result is the archive copy.Image writes without the pairing, byte for byte; only the
// reading is cheaper. src's archive must stay open until the copy is done. References it
// cannot pair are refused with ErrCannotPair.
func CopyFrom(dst, src types.ImageReference, opts ...CopyFromOption) (types.ImageReference, error) {
	var o copyFromOptions
	for _, f := range opts {
		f(&o)
	}
	d, ok := dst.(archiveReference)
	if !ok {
		return nil, fmt.Errorf("%w: destination %s is not a %s reference of this package", ErrCannotPair, dst.Transport().Name(), reference.Transport)
	}
	s, ok := src.(archiveReference)
	if !ok || s.reader == nil {
		return nil, fmt.Errorf("%w: source %s:%s is not an image of an open archive", ErrCannotPair, src.Transport().Name(), src.StringWithinTransport())
	}
	img, err := s.reader.r.Select(s.sel)
	if err != nil {
		return nil, err
	}
	d.from = &directSource{img: img, progress: o.progress}
	return d, nil
}

// directSource is the image a destination may copy layers from directly (see CopyFrom).
type directSource struct {
	img      *tarfile.Image
	progress func(blob digest.Digest, done, size int64)
}

// layer finds the layer of the source image whose served blob is d.
func (s *directSource) layer(d digest.Digest) (*tarfile.Image, tarfile.Layer, bool, error) {
	img := s.img
	res, err := img.Resolve()
	if err != nil {
		return nil, tarfile.Layer{}, false, err
	}
	for _, l := range res.Layers {
		if l.Digest == d {
			return img, l, true, nil
		}
	}
	return nil, tarfile.Layer{}, false, nil
}

// copyDirect copies the layer of the paired source whose blob is info.Digest into the
// archive, as the layout stores it, and reports it as reused (see CopyFrom). It declines
// (false, nil) a blob the source image does not have, a compressed member bound for
// LayoutDocker when substituting is not allowed, and xz or bzip2 members bound for LayoutOCI.
func (d *imageDestination) copyDirect(ctx context.Context, info types.BlobInfo, canSubstitute bool) (bool, types.BlobInfo, error) {
	img, l, ok, err := d.from.layer(info.Digest)
	if err != nil || !ok {
		return false, types.BlobInfo{}, err
	}
	stored := img.Stored(l.Member)
	var r io.Reader
	want := types.BlobInfo{Digest: l.DiffID, Size: l.Member.Size}
	var op types.LayerCompression
	switch {
	case l.Compression == tarfile.Uncompressed:
		r = progressOf(d.from, stored, l)
	case d.a.layout == LayoutDocker:
		if l.Digest != l.DiffID {
			if !canSubstitute {
				return false, types.BlobInfo{}, nil
			}
			op = types.Decompress
			// The layout stores the uncompressed layer: it may be there already.
			if m, ok, err := d.a.lookupAndUse(d.slot, d.a.layerName(l.DiffID)); err != nil || ok {
				return ok, types.BlobInfo{Digest: l.DiffID, Size: sizeOf(m), CompressionOperation: op}, err
			}
		}
		// The progress reader counts the stored bytes; the decompressed layer is hashed
		// against its diffID as it is written.
		dec, closeDec, err := tarfile.Decompress(progressOf(d.from, stored, l), l.Compression)
		if err != nil {
			return false, types.BlobInfo{}, err
		}
		defer closeDec()
		r, want.Size = dec, -1
	case l.Compression == tarfile.Gzip || l.Compression == tarfile.Zstd:
		// As stored, through the verifying reader: the archive may not state the digest of a
		// compressed member, and a digest computed from the member proves nothing.
		rc, _, err := img.OpenBlob(l.Digest, false)
		if err != nil {
			return false, types.BlobInfo{}, err
		}
		defer rc.Close()
		r, want = progressOf(d.from, rc, l), types.BlobInfo{Digest: l.Digest, Size: l.Size}
	default:
		return false, types.BlobInfo{}, nil
	}
	bi, err := d.putLayer(ctxReader{ctx: ctx, r: r}, want)
	if err != nil {
		return false, types.BlobInfo{}, fmt.Errorf("%s: layer %s (%s of %s): %w", d.label(), info.Digest, l.Name, img.Name(), err)
	}
	bi.CompressionOperation = op
	return true, bi, nil
}

// progressOf reports the reading of layer l's member through the source's progress function.
func progressOf(s *directSource, r io.Reader, l tarfile.Layer) io.Reader {
	return tarfile.ProgressReader(r, l.Digest, l.Member.Size, s.progress)
}

// SourceOf returns what a docker-archive reference of this package names: the open archive
// it shares (nil for a reference parsed from a string, whose archive its image source opens
// itself), the archive's path and the image's selector. ok is false for a reference of
// another transport. A caller copying several images of one archive opens it once with it.
func SourceOf(ref types.ImageReference) (a *ReadableArchive, path string, sel reference.Selector, ok bool) {
	ar, ok := ref.(archiveReference)
	if !ok {
		return nil, "", reference.Selector{}, false
	}
	return ar.reader, ar.path, ar.sel, true
}
