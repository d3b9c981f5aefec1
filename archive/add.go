package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// ErrLayoutUnsupported is returned by AddImage for an image it cannot write into the
// archive's layout directly (xz or bzip2 layer members bound for LayoutOCI), before it writes
// anything; copy that image with containers/image's copy.Image instead.
var ErrLayoutUnsupported = errors.New("layout not supported by AddImage")

// AddOptions configures AddImage.
type AddOptions struct {
	// Tags name the image in the new archive; nil gives it the tags it has in the source.
	Tags []distref.NamedTagged
	// Progress, when set, is called as a blob's bytes are read: done of size bytes (size -1
	// when the length is not known before the end). It must not block.
	Progress func(blob digest.Digest, done, size int64)
}

// Added describes an image AddImage wrote.
type Added struct {
	Reference types.ImageReference // the image's reference within the new archive
	Tags      []distref.NamedTagged
	ImageID   digest.Digest
	// Manifest is the digest of the manifest the new archive serves for the image.
	Manifest digest.Digest
	// Bytes counts the blob bytes read from src; blobs a already held are not read.
	Bytes int64
}

// AddImage copies the image of src that sel picks into a, the way merging and filtering
// archives need: member to member, without containers/image's copy pipeline. Each blob a
// does not hold yet is read once and hashed once, as it is written, against the digest the
// source states for it; a mismatch fails the image and leaves nothing of it in a.
// Uncompressed layers go across byte for byte. In LayoutDocker a compressed layer is
// decompressed (the layout stores layers uncompressed) and checked against its diffID; in
// LayoutOCI it goes across as stored, checked by the source's verifying reader as well (which
// also checks its diffID when the archive does not state its digest), and the image keeps the
// manifest the source serves, as copy.Image keeps it.
//
// An image with xz or bzip2 layer members, which the source serves decompressed under a
// manifest whose sizes are not known, is not written into LayoutOCI this way: AddImage
// returns ErrLayoutUnsupported before it writes anything. Like an image copied to a
// reference from NewReference, the image is in a once AddImage returns nil; a is not
// committed.
func (a *WritableArchive) AddImage(ctx context.Context, src *ReadableArchive, sel reference.Selector, o AddOptions) (Added, error) {
	img, err := src.r.Select(sel)
	if err != nil {
		return Added{}, err
	}
	res, err := img.Resolve()
	if err != nil {
		return Added{}, err
	}
	if a.layout != LayoutDocker {
		for _, l := range res.Layers {
			if l.Compression == tarfile.Xz || l.Compression == tarfile.Bzip2 {
				return Added{}, fmt.Errorf("archive %q: %w: %q with %s layer members", a.name, ErrLayoutUnsupported, a.layout, l.Compression)
			}
		}
	}
	tags := o.Tags
	if tags == nil {
		tags = img.Tags
	}
	ref, err := a.NewReference(tags...)
	if err != nil {
		return Added{}, err
	}
	d, err := a.newDestination(ref.(archiveReference), nil, false)
	if err != nil {
		return Added{}, err
	}
	defer func() { _ = d.Close() }() // gives the image up unless it was committed

	out := Added{Reference: ref, Tags: tags, ImageID: img.ID}
	// Layers first, then the config: the order copy.Image uses, so that both ways of copying
	// an image write the same archive.
	layers := make([]tarfile.Layer, len(res.Layers))
	for i, l := range res.Layers {
		bi, n, err := d.addLayer(ctx, img, l, o.Progress)
		out.Bytes += n
		if err != nil {
			return Added{}, fmt.Errorf("%s: layer %d (%s of %s): %w", d.label(), i, l.Name, img.Name(), err)
		}
		layers[i] = tarfile.UncompressedLayer(bi.Digest, bi.Size)
	}
	if _, err := d.putConfig(bytes.NewReader(res.Config), types.BlobInfo{Digest: img.ID, Size: int64(len(res.Config))}); err != nil {
		return Added{}, err
	}
	out.Bytes += int64(len(res.Config))
	m := res.Manifest
	if a.layout == LayoutDocker {
		if m, _, err = tarfile.BuildManifest(img.ID, int64(len(res.Config)), layers, false); err != nil {
			return Added{}, err
		}
	}
	if err := d.PutManifest(ctx, m, nil); err != nil {
		return Added{}, err
	}
	if err := d.Commit(ctx, nil); err != nil {
		return Added{}, err
	}
	out.Manifest = digest.FromBytes(m)
	return out, nil
}

// SourceOf returns what a docker-archive reference of this package names: the open archive
// it shares (nil for a reference parsed from a string, whose archive its image source opens
// itself), the archive's path and the image's selector. ok is false for a reference of
// another transport. A caller copying several images of one archive (AddImage) opens it
// once with it.
func SourceOf(ref types.ImageReference) (a *ReadableArchive, path string, sel reference.Selector, ok bool) {
	ar, ok := ref.(archiveReference)
	if !ok {
		return nil, "", reference.Selector{}, false
	}
	return ar.reader, ar.path, ar.sel, true
}

// addLayer writes layer l of img as the archive's layout stores it (uncompressed in
// LayoutDocker, as stored in LayoutOCI), unless the archive has it. It returns the blob as
// written and the bytes read from the source.
func (d *imageDestination) addLayer(ctx context.Context, img *tarfile.Image, l tarfile.Layer, progress func(digest.Digest, int64, int64)) (types.BlobInfo, int64, error) {
	stored := img.Stored(l.Member)
	var r io.Reader = stored
	info := types.BlobInfo{Digest: l.DiffID, Size: l.Member.Size}
	read := func() int64 { n, _ := stored.Seek(0, io.SeekCurrent); return n }
	switch {
	case l.Compression == tarfile.Uncompressed:
	case d.a.layout != LayoutDocker:
		// As stored, through the verifying reader: the archive may not state the digest of a
		// compressed member, and a digest computed from the member proves nothing.
		rc, _, err := img.OpenBlob(l.Digest, false)
		if err != nil {
			return types.BlobInfo{}, 0, err
		}
		defer rc.Close()
		c := &tarfile.CountingReader{R: rc}
		r, info, read = c, types.BlobInfo{Digest: l.Digest, Size: l.Size}, func() int64 { return c.N }
	default:
		dec, closeDec, err := tarfile.Decompress(stored, l.Compression)
		if err != nil {
			return types.BlobInfo{}, 0, err
		}
		defer closeDec()
		r, info.Size = dec, -1
	}
	bi, err := d.putLayer(tarfile.ProgressReader(ctxReader{ctx: ctx, r: r}, info.Digest, info.Size, progress), info)
	return bi, read(), err
}
