package tarfile

import (
	"errors"
	"fmt"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/darc-dev/darc/internal/layout"
)

// Layer describes one layer of an image as it is served.
type Layer struct {
	// Name is the layer's path as manifest.json gives it (cleaned); Member is the regular file
	// it resolves to (links followed).
	Name   string
	Member Member
	// DiffID is the digest of the uncompressed layer, from the config's rootfs.diff_ids.
	DiffID digest.Digest
	// Compression is what the stored member holds.
	Compression Compression
	// Digest, Size and MediaType describe the blob served for the layer: the stored bytes
	// for uncompressed, gzip and zstd members; the decompressed stream (Size -1) for xz and
	// bzip2 members, which no manifest media type can describe.
	Digest    digest.Digest
	Size      int64
	MediaType string
	// URLs are set for a foreign layer, which is not in the archive (Member is zero): the
	// places the archive's own manifest says it is fetched from.
	URLs []string
}

// Resolved is everything needed to serve an image: its config, layers and manifest.
type Resolved struct {
	Config       []byte
	Architecture string
	OS           string
	Variant      string
	Layers       []Layer
	// Manifest is the archive's own manifest when it carries one for this image (an OCI
	// layout inside, as Docker 25+ and BuildKit write), so the image digest is preserved;
	// otherwise one built from the config.
	Manifest     []byte
	ManifestType string
	OwnManifest  bool

	blobs map[digest.Digest]blob
}

// blob says how to serve and verify one blob of an image.
type blob struct {
	name   string // for messages
	member Member
	data   []byte // served from memory (the config) when not nil
	// digest and size of the bytes served (size -1: unknown).
	digest digest.Digest
	size   int64
	// stored is the member's compression; decompress serves it decompressed.
	stored     Compression
	decompress bool
	// diffID, when set, is checked on the decompressed stream of a compressed member whose
	// digest the archive did not state (a digest we computed ourselves proves nothing).
	diffID digest.Digest
	// allDiffID is the layer's diffID, checked on the decompressed stream when the caller asks
	// for full verification.
	allDiffID digest.Digest
}

// Resolve reads the image's config, checks it against its layers, and works out
// how each blob is served. The result is computed once and shared.
func (img *Image) Resolve() (*Resolved, error) {
	img.once.Do(func() {
		img.res, img.resErr = img.resolve()
		if img.resErr != nil {
			img.resErr = fmt.Errorf("archive %q: %s: %w", img.r.name, img.Name(), img.resErr)
		}
	})
	return img.res, img.resErr
}

func (img *Image) resolve() (*Resolved, error) {
	if len(img.Problems) > 0 {
		return nil, errors.Join(img.Problems...)
	}
	r := img.r
	res := &Resolved{blobs: map[digest.Digest]blob{}}
	cfgData := img.legacyConfig
	var cfg *layout.Config
	var err error
	if cfgData == nil {
		// Read through the per-member cache: images sharing a config share its bytes.
		m, rerr := r.ix.Resolve(img.ConfigName)
		if rerr != nil {
			return nil, fmt.Errorf("config: %w", rerr)
		}
		e := r.configOf(m)
		if e.err != nil {
			return nil, fmt.Errorf("config: %w", e.err)
		}
		cfgData = e.data
		cfg, err = e.parsed()
	} else {
		cfg, err = layout.ParseConfig(cfgData)
	}
	if err != nil {
		return nil, fmt.Errorf("config %q: %w: %w", img.ConfigName, ErrInvalidManifest, err)
	}
	res.Config, res.Architecture, res.OS, res.Variant = cfgData, cfg.Architecture, cfg.OS, cfg.Variant
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(img.LayerNames) {
		return nil, fmt.Errorf("%w: the config lists %d layers (rootfs.diff_ids), manifest.json lists %d", ErrInvalidManifest, len(diffIDs), len(img.LayerNames))
	}
	cfgMember, _ := r.ix.Resolve(img.ConfigName)
	res.blobs[img.ID] = blob{name: img.ConfigName, data: cfgData, digest: img.ID, size: int64(len(cfgData))}

	needOCI := false
	for j, m := range img.LayerMembers {
		if d, ok := img.foreign[j]; ok {
			c, _ := layerMediaTypeCompression(d.MediaType)
			res.Layers = append(res.Layers, Layer{Name: img.LayerNames[j], DiffID: diffIDs[j], Compression: c, Digest: d.Digest, Size: d.Size, MediaType: d.MediaType, URLs: d.URLs})
			continue
		}
		if img.legacyConfig == nil && m.Offset == cfgMember.Offset && m.Name == cfgMember.Name {
			return nil, fmt.Errorf("%w: member %q is both the config and layer %d", ErrInvalidManifest, m.Name, j)
		}
		l, b, err := r.describeLayer(img, j, diffIDs[j])
		if err != nil {
			return nil, fmt.Errorf("layer %d %q: %w", j, img.LayerNames[j], err)
		}
		if l.Compression == Zstd && l.Size >= 0 {
			needOCI = true // served as stored: only OCI has a zstd media type
		}
		res.Layers = append(res.Layers, l)
		if _, dup := res.blobs[l.Digest]; !dup {
			res.blobs[l.Digest] = b
		}
	}

	if ok, err := img.useOwnManifest(res); err != nil {
		return nil, err
	} else if ok {
		return res, nil
	}
	return res, res.buildManifest(img.ID, needOCI)
}

// describeLayer works out how layer j is served.
func (r *Reader) describeLayer(img *Image, j int, diffID digest.Digest) (Layer, blob, error) {
	m := img.LayerMembers[j]
	name := img.LayerNames[j]
	l := Layer{Name: name, Member: m, DiffID: diffID}
	c, skippable, err := r.sniff(m)
	if err != nil {
		return l, blob{}, err
	}
	l.Compression = c
	b := blob{name: name, member: m, stored: l.Compression, allDiffID: diffID}
	switch {
	case c == Uncompressed:
		u := uncompressedLayer(diffID, m.Size)
		l.Digest, l.Size, l.MediaType = u.Digest, u.Size, u.MediaType
	case c == Gzip, c == Zstd && !skippable:
		l.Size = m.Size
		l.MediaType = manifest.DockerV2Schema2LayerMediaType
		if l.Compression == Zstd {
			l.MediaType = imgspecv1.MediaTypeImageLayerZstd
		}
		if src, ok := img.layerSources[diffID]; ok && src.Size == m.Size && src.Digest.Validate() == nil {
			l.Digest = src.Digest
		} else if d, ok := layout.DigestFromName(name, true); ok {
			l.Digest = d
		} else {
			d, err := r.hashMember(m)
			if err != nil {
				return l, blob{}, err
			}
			l.Digest = d
			b.diffID = diffID
		}
	default:
		// xz and bzip2, which no media type can carry, and zstd behind a leading skippable
		// frame (pzstd's output), which containers/image takes for uncompressed data and
		// would compress again: served decompressed.
		l.Digest, l.Size, l.MediaType = diffID, -1, manifest.DockerV2SchemaLayerMediaTypeUncompressed
		b.decompress = true
	}
	b.digest, b.size = l.Digest, l.Size
	return l, b, nil
}

// sniff identifies the compression of a member's stored bytes from its first bytes (or, for
// a streamed archive, from what was seen as it passed), and whether they start with a zstd
// skippable frame (see StartsWithSkippableFrame).
func (r *Reader) sniff(m Member) (c Compression, skippable bool, err error) {
	if f, ok := r.StreamFacts(m); ok {
		return f.Compression, f.SkippableStart, nil
	}
	var head [10]byte
	n, err := io.ReadFull(r.ix.section(m), head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Uncompressed, false, err
	}
	return sniffMember(head[:n]), StartsWithSkippableFrame(head[:n]), nil
}

// sniffMember identifies a layer member's compression from its first bytes. A tar header is
// not needed here: a layer's first member name never starts with compression magic that
// also has a valid continuation, and an empty layer has no bytes at all.
func sniffMember(head []byte) Compression {
	return DetectCompression(head)
}

// buildManifest makes the manifest the image is served with when the archive has none of
// its own (see composeManifest).
func (res *Resolved) buildManifest(id digest.Digest, oci bool) error {
	var err error
	res.Manifest, res.ManifestType, err = composeManifest(id, int64(len(res.Config)), res.Layers, oci)
	return err
}

// composeManifest makes the manifest of an image whose config (id, size) and layers are known:
// Docker schema2, or OCI when oci is set (a zstd layer needs it: schema2 cannot describe one).
// The layers' Digest, Size, MediaType and Compression are used.
func composeManifest(id digest.Digest, configSize int64, ls []Layer, oci bool) ([]byte, string, error) {
	if oci {
		layers := make([]imgspecv1.Descriptor, len(ls))
		for i, l := range ls {
			mt := l.MediaType
			switch {
			case l.Compression == Uncompressed, l.Size < 0: // stored or served uncompressed
				mt = imgspecv1.MediaTypeImageLayer
			case l.Compression == Gzip:
				mt = imgspecv1.MediaTypeImageLayerGzip
			}
			layers[i] = imgspecv1.Descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size}
		}
		m := manifest.OCI1FromComponents(imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: id, Size: configSize}, layers)
		b, err := m.Serialize()
		return b, imgspecv1.MediaTypeImageManifest, err
	}
	layers := make([]manifest.Schema2Descriptor, len(ls))
	for i, l := range ls {
		layers[i] = manifest.Schema2Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
	}
	m := manifest.Schema2FromComponents(manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2ConfigMediaType, Digest: id, Size: configSize}, layers)
	b, err := m.Serialize()
	return b, manifest.DockerV2Schema2MediaType, err
}

// uncompressedLayer describes an uncompressed layer as a docker-archive stores and serves
// it: named by its diffID.
func uncompressedLayer(diffID digest.Digest, size int64) Layer {
	return Layer{DiffID: diffID, Compression: Uncompressed, Digest: diffID, Size: size, MediaType: manifest.DockerV2SchemaLayerMediaTypeUncompressed}
}

// OpenBlob returns a reader of the blob with digest d, its size (-1 if unknown) and verifies
// the bytes while they are read: a mismatch is returned instead of io.EOF. A layer's
// uncompressed stream is read as a tar on the way (one that is not a tar wraps
// ErrInvalidLayer): always when it is stored uncompressed, and when it is decompressed anyway.
// With full set, a compressed layer is always decompressed on the way and checked against its
// diffID.
func (img *Image) OpenBlob(d digest.Digest, full bool) (io.ReadCloser, int64, error) {
	res, err := img.Resolve()
	if err != nil {
		return nil, 0, err
	}
	b, ok := res.blobs[d]
	if !ok {
		for _, l := range res.Layers {
			if l.Digest == d && l.URLs != nil {
				return nil, 0, fmt.Errorf("archive %q: %s: %w: layer %s is a foreign layer, not in the archive; it is fetched from %s", img.r.name, img.Name(), ErrMemberNotFound, d, strings.Join(l.URLs, ", "))
			}
		}
		return nil, 0, fmt.Errorf("archive %q: %s: %w: no blob %s", img.r.name, img.Name(), ErrMemberNotFound, d)
	}
	label := fmt.Sprintf("archive %q: %s: member %q", img.r.name, img.Name(), b.name)
	if b.data != nil {
		return newVerifier(io.NopCloser(newBytesReader(b.data)), b.digest, b.size, label, Uncompressed, "", false), b.size, nil
	}
	var src io.Reader = img.r.ix.section(b.member)
	if b.decompress {
		dec, closeDec, err := Decompress(src, b.stored)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", label, err)
		}
		return newVerifier(readCloser{dec, closeDec}, b.digest, -1, label, Uncompressed, "", true), -1, nil
	}
	diffID := b.diffID
	if full && b.stored != Uncompressed {
		diffID = b.allDiffID
	}
	return newVerifier(io.NopCloser(src), b.digest, b.size, label, b.stored, diffID, true), b.size, nil
}

type readCloser struct {
	io.Reader
	close func()
}

func (rc readCloser) Close() error {
	rc.close()
	return nil
}

// Stored returns a reader of member m's bytes as stored, unverified: for a caller that
// checks them itself (a writer hashing what it copies against the digest it expects).
func (img *Image) Stored(m Member) *io.SectionReader {
	return img.r.ix.section(m)
}
