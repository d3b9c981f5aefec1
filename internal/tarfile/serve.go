package tarfile

import (
	"fmt"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/layout"
)

// What a registry serving an archive reads: every manifest an image can be fetched by, and
// where each of its blobs' bytes are, so that the server reads and checks them itself (it
// hashes a blob once, then sends it, or any range of it, as stored) instead of through
// OpenBlob's verifier, which only reads from the start.

// ServedManifest is a manifest (or manifest list) as a registry serves it.
type ServedManifest struct {
	Digest    digest.Digest
	MediaType string
	Data      []byte
}

// ServedBlob is one blob as a registry serves it.
type ServedBlob struct {
	Digest digest.Digest
	// Size is the number of bytes served.
	Size int64
	// Decompressed is set for a layer member served decompressed (xz, bzip2, or zstd behind
	// a skippable frame): its bytes are read through Open only.
	Decompressed bool
	// Data holds a blob kept in memory (a config, or a legacy image's synthesized one).
	Data []byte
	// Section holds the stored bytes of a blob served as stored; nil for Data and for a
	// decompressed blob. It is shared: read it with ReadAt, or through a new
	// io.SectionReader over it, never with its own Read.
	Section *io.SectionReader

	img *Image // for a decompressed blob
}

// Open reads the whole blob; a decompressed one through the verifier OpenBlob returns,
// which checks it against its digest (the layer's diffID) at its end.
func (b ServedBlob) Open() (io.ReadCloser, error) {
	if b.img == nil {
		if b.Data != nil {
			return io.NopCloser(newBytesReader(b.Data)), nil
		}
		return io.NopCloser(io.NewSectionReader(b.Section, 0, b.Size)), nil
	}
	rc, _, err := b.img.OpenBlob(b.Digest, false)
	return rc, err
}

// Served lists what a registry serves for an image reached by a tag: the manifest the tag
// names (the manifest list the image is one platform of, when the archive holds one, or the
// image's manifest), every manifest fetched by digest under it, and every blob.
type Served struct {
	Top       ServedManifest
	Manifests []ServedManifest
	Blobs     map[digest.Digest]ServedBlob
}

// Served works out what a registry serves for the image; it resolves the image, and each
// complete platform of its manifest list.
func (img *Image) Served() (*Served, error) {
	s := &Served{Blobs: map[digest.Digest]ServedBlob{}}
	res, err := img.Resolve()
	if err != nil {
		return nil, err
	}
	own := ServedManifest{Digest: digest.FromBytes(res.Manifest), MediaType: res.ManifestType, Data: res.Manifest}
	sizes, err := img.decompressedSizes(res)
	if err != nil {
		return nil, err
	}
	if len(sizes) > 0 {
		if own, err = img.sizedManifest(res, sizes); err != nil {
			return nil, err
		}
	}
	s.Top = own
	img.addBlobs(s, res, sizes)
	if c, ok := img.ListContent(); ok {
		l := c.List()
		s.Top = ServedManifest{Digest: l.Digest, MediaType: l.MediaType, Data: l.Data}
		s.Manifests = append(s.Manifests, s.Top)
		for _, in := range l.Instances {
			if in.State == Absent {
				continue
			}
			s.Manifests = append(s.Manifests, ServedManifest{Digest: in.Digest, MediaType: in.manifest.mediaType, Data: in.manifest.data})
			if in.State != Complete {
				continue
			}
			if in.Attestation {
				img.r.addMemberBlobs(s, in.manifest)
			}
		}
		for _, p := range c.images {
			pres, err := p.Resolve()
			if err != nil {
				return nil, fmt.Errorf("manifest list %s: %w", l.Digest, err)
			}
			p.addBlobs(s, pres, nil)
		}
	}
	// The image's own manifest, when it is not one of the list's (a manifest built from the
	// config), is still fetched by its digest.
	found := false
	for _, m := range s.Manifests {
		found = found || m.Digest == own.Digest
	}
	if !found {
		s.Manifests = append(s.Manifests, own)
	}
	return s, nil
}

// decompressedSizes reads each layer the image source serves decompressed, of a size no
// manifest can state until it is read, to its end (checking its diffID on the way), and
// returns their sizes by digest: a registry must state every blob's size.
func (img *Image) decompressedSizes(res *Resolved) (map[digest.Digest]int64, error) {
	var sizes map[digest.Digest]int64
	for _, l := range res.Layers {
		if l.Size >= 0 || l.URLs != nil {
			continue
		}
		if _, done := sizes[l.Digest]; done {
			continue
		}
		rc, _, err := img.OpenBlob(l.Digest, false)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", l.Name, err)
		}
		if sizes == nil {
			sizes = map[digest.Digest]int64{}
		}
		sizes[l.Digest] = n
	}
	return sizes, nil
}

// sizedManifest is the manifest the image source builds, with the sizes of the layers it
// serves decompressed filled in: what a registry serves instead, with another digest.
func (img *Image) sizedManifest(res *Resolved, sizes map[digest.Digest]int64) (ServedManifest, error) {
	layers := append([]Layer(nil), res.Layers...)
	for i, l := range layers {
		if n, ok := sizes[l.Digest]; ok {
			layers[i].Size, layers[i].Compression = n, Uncompressed
		}
	}
	data, mt, err := composeManifest(img.ID, int64(len(res.Config)), layers, res.ManifestType == imgspecv1.MediaTypeImageManifest)
	if err != nil {
		return ServedManifest{}, err
	}
	return ServedManifest{Digest: digest.FromBytes(data), MediaType: mt, Data: data}, nil
}

// addBlobs adds the blobs of a resolved image, the first source of a digest kept; sizes
// are those of the blobs served decompressed.
func (img *Image) addBlobs(s *Served, res *Resolved, sizes map[digest.Digest]int64) {
	for d, b := range res.blobs {
		if _, dup := s.Blobs[d]; dup {
			continue
		}
		sb := ServedBlob{Digest: b.digest, Size: b.size}
		switch {
		case b.data != nil:
			sb.Data = b.data
		case b.decompress:
			n, ok := sizes[d]
			if !ok {
				continue // not a layer of this image's manifest: nothing names it
			}
			sb.img, sb.Decompressed, sb.Size = img, true, n
		default:
			sb.Section = img.r.ix.section(b.member)
		}
		s.Blobs[d] = sb
	}
}

// addMemberBlobs adds the config and layers of a manifest stored in the OCI layout (an
// attestation), as stored under blobs/.
func (r *Reader) addMemberBlobs(s *Served, m ociManifest) {
	ds := []digest.Digest{m.parsed.ConfigInfo().Digest}
	for _, li := range m.parsed.LayerInfos() {
		ds = append(ds, li.Digest)
	}
	for _, d := range ds {
		if _, dup := s.Blobs[d]; dup || d.Validate() != nil {
			continue
		}
		mem, err := r.ix.Resolve(layout.BlobName(d))
		if err != nil {
			continue // a foreign layer
		}
		s.Blobs[d] = ServedBlob{Digest: d, Size: mem.Size, Section: r.ix.section(mem)}
	}
}

// Source is a file an archive is read from in place, and what stat said of it when it was
// opened: a server compares the two to notice the file changing under it.
type Source struct {
	File *os.File
	Info os.FileInfo
}

// Sources returns the files the archive is read from in place (a plain tar or a seekable
// bundle, or the parts of a split one); nil for a spooled input, whose temp file nobody else
// writes.
func (r *Reader) Sources() []Source { return r.sources }
