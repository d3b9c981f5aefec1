package tarfile

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/darc-dev/darc/internal/layout"
	"github.com/darc-dev/darc/reference"
)

// maxIndexDepth bounds nested indexes inside an OCI layout.
const maxIndexDepth = 4

// ociLayout is what an OCI image layout inside the archive (Docker 25+, BuildKit) says.
type ociLayout struct {
	// byConfig maps a config digest to the first manifest (in index.json order) using it.
	byConfig map[digest.Digest]ociManifest
	// tops are the manifests index.json names directly or, for a multi-platform index, the
	// one picked for this platform, with the names the annotations give them; in order.
	tops []ociManifest
	// referenced holds every member reached from index.json.
	referenced map[string]bool
	// listByConfig maps a config digest to the first manifest list (in index.json order)
	// holding a manifest that uses it.
	listByConfig map[digest.Digest]*ManifestList
	// walked records what each manifest or index blob led to, so that a blob named many
	// times (by index.json, or by indexes at several levels) is read once: without it, indexes
	// that each list the next one k times cost k^depth reads in an archive of a few kilobytes.
	walked map[walkKey]walkResult
}

// walkKey identifies a blob as descriptors name it.
type walkKey struct {
	digest digest.Digest
	size   int64
}

// walkResult is the outcome of walking one blob.
type walkResult struct {
	m     ociManifest // the manifest the blob is, or the one picked from the index it is
	ok    bool
	depth int // where it was walked: a failure may be due to the depth bound
}

type ociManifest struct {
	data      []byte
	mediaType string
	digest    digest.Digest
	parsed    manifest.Manifest
	names     []string
}

// ociLayoutInfo parses index.json and the manifests it reaches, once. It returns nil
// without error when the archive has no index.json.
func (r *Reader) ociLayoutInfo() (*ociLayout, error) {
	r.ociOnce.Do(func() {
		if !r.has(layout.IndexFile) {
			return
		}
		r.oci, r.ociErr = r.parseOCILayout()
		if r.ociErr != nil {
			r.ociErr = fmt.Errorf("archive %q: index.json: %w", r.name, r.ociErr)
		}
	})
	return r.oci, r.ociErr
}

func (r *Reader) parseOCILayout() (*ociLayout, error) {
	data, err := r.readMetadata(layout.IndexFile)
	if err != nil {
		return nil, err
	}
	idx, err := layout.ParseIndex(data, r.limits.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	l := &ociLayout{byConfig: map[digest.Digest]ociManifest{}, listByConfig: map[digest.Digest]*ManifestList{}, referenced: map[string]bool{}, walked: map[walkKey]walkResult{}}
	for _, d := range idx.Manifests {
		if m, ok := l.walk(r, d, 0); ok {
			m.names = layout.AnnotationNames(d)
			l.tops = append(l.tops, m)
		}
	}
	return l, nil
}

// readBlob reads a blob of the layout, checking its digest and declared size.
func (r *Reader) readBlob(d imgspecv1.Descriptor) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: descriptor digest %q: %w", ErrInvalidManifest, d.Digest, err)
	}
	// The size is checked before reading, so that a descriptor with a wrong size costs no read.
	if m, err := r.ix.Resolve(layout.BlobName(d.Digest)); err != nil {
		return nil, err
	} else if m.Size != d.Size {
		return nil, fmt.Errorf("member %q: %w: %d bytes, descriptor says %d", layout.BlobName(d.Digest), ErrSizeMismatch, m.Size, d.Size)
	}
	data, _, err := r.ix.ReadSmall(layout.BlobName(d.Digest), r.limits.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	if got := d.Digest.Algorithm().FromBytes(data); got != d.Digest {
		return nil, fmt.Errorf("member %q: %w: content is %s", layout.BlobName(d.Digest), ErrDigestMismatch, got)
	}
	if d.Size != int64(len(data)) {
		return nil, fmt.Errorf("member %q: %w: %d bytes, descriptor says %d", layout.BlobName(d.Digest), ErrSizeMismatch, len(data), d.Size)
	}
	return data, nil
}

// walk records the manifest (or the manifests of the index) d points at, and returns the
// manifest to serve for d: the manifest itself, or the one an index stands for (see
// ManifestList.representative). Unreadable or inconsistent entries are skipped: the image is then served with a
// manifest built from its config, which is always possible.
func (l *ociLayout) walk(r *Reader, d imgspecv1.Descriptor, depth int) (ociManifest, bool) {
	if depth > maxIndexDepth {
		return ociManifest{}, false
	}
	key := walkKey{d.Digest, d.Size}
	if w, done := l.walked[key]; done && (w.ok || w.depth <= depth) {
		return w.m, w.ok
	}
	w := walkResult{depth: depth}
	w.m, w.ok = l.walkBlob(r, d, depth)
	l.walked[key] = w
	return w.m, w.ok
}

func (l *ociLayout) walkBlob(r *Reader, d imgspecv1.Descriptor, depth int) (ociManifest, bool) {
	data, err := r.readBlob(d)
	if err != nil {
		return ociManifest{}, false
	}
	l.referenced[layout.BlobName(d.Digest)] = true
	mt := d.MediaType
	if mt == "" {
		mt = manifest.GuessMIMEType(data)
	}
	if manifest.MIMETypeIsMultiImage(mt) {
		// An OCI index and a Docker manifest list have the same shape. They are decoded here
		// rather than with manifest.ListFromBlob, whose lookup of an instance by digest
		// scans the list: quadratic in a list of many entries.
		// The blob was read within the manifest size limit; the bound on strings is
		// index.json's alone (0: none here).
		list, err := layout.ParseIndex(data, 0)
		if err != nil {
			return ociManifest{}, false
		}
		ml := l.newManifestList(r, d, mt, data, list, depth)
		for _, in := range ml.Instances {
			if in.State != Absent {
				if cfg := in.manifest.parsed.ConfigInfo().Digest; l.listByConfig[cfg] == nil {
					l.listByConfig[cfg] = ml
				}
			}
		}
		return ml.representative()
	}
	parsed, err := manifest.FromBlob(data, mt)
	if err != nil {
		return ociManifest{}, false
	}
	cfg := parsed.ConfigInfo().Digest
	l.referenced[layout.BlobName(cfg)] = true
	for _, li := range parsed.LayerInfos() {
		l.referenced[layout.BlobName(li.Digest)] = true
	}
	m := ociManifest{data: data, mediaType: mt, digest: d.Digest, parsed: parsed}
	if _, dup := l.byConfig[cfg]; !dup {
		l.byConfig[cfg] = m
	}
	return m, true
}

// useOwnManifest serves the archive's own manifest for img when its OCI layout has one that
// uses img's config. That manifest is the image's identity (its digest), so it is served
// exactly as it is or not at all: one that does not describe the config and the blobs it
// names (a size, a layer count, a media type that lies about compression, an uncompressed
// blob that is not the config's layer) makes Resolve fail, rather than serving a broken image
// or silently building another manifest, which would change the image's digest. A compressed
// blob's diffID is checked whenever the blob is read (see blob.diffID).
func (img *Image) useOwnManifest(res *Resolved) (bool, error) {
	l, err := img.r.ociLayoutInfo()
	if err != nil || l == nil {
		// A broken index.json does not make the image unreadable: manifest.json suffices.
		return false, nil
	}
	m, ok := l.byConfig[img.ID]
	if !ok {
		if m, ok = img.r.unindexedManifest(img.ID); !ok {
			return false, nil
		}
	}
	if err := img.serveOwnManifest(res, m); err != nil {
		return false, fmt.Errorf("the archive's own manifest %s: %w", m.digest, err)
	}
	return true, nil
}

// serveOwnManifest checks m against the config and the blobs it names and makes res serve it.
func (img *Image) serveOwnManifest(res *Resolved, m ociManifest) error {
	if got, want := m.parsed.ConfigInfo().Size, int64(len(res.Config)); got != want {
		return fmt.Errorf("%w: its config descriptor says %d bytes, the config has %d", ErrSizeMismatch, got, want)
	}
	infos := m.parsed.LayerInfos()
	if len(infos) != len(res.Layers) {
		return fmt.Errorf("%w: it lists %d layers, the config (rootfs.diff_ids) %d", ErrInvalidManifest, len(infos), len(res.Layers))
	}
	blobs := map[digest.Digest]blob{img.ID: res.blobs[img.ID]}
	layers := make([]Layer, len(res.Layers))
	for i, li := range infos {
		if res.Layers[i].URLs != nil {
			layers[i] = res.Layers[i] // foreign: served by nobody here (see Image.foreignLayer)
			continue
		}
		l, err := img.ownLayer(res.Layers[i], li.Digest, li.Size, li.MediaType)
		if err != nil {
			return fmt.Errorf("layer %d %s: %w", i, li.Digest, err)
		}
		layers[i] = l
		if _, dup := blobs[l.Digest]; !dup {
			b := blob{name: l.Name, member: l.Member, digest: l.Digest, size: l.Size, stored: l.Compression, allDiffID: l.DiffID}
			if l.Compression != Uncompressed {
				b.diffID = l.DiffID // the manifest's digest names the blob, not what it holds
			}
			blobs[l.Digest] = b
		}
	}
	res.Layers, res.blobs = layers, blobs
	res.Manifest, res.ManifestType, res.OwnManifest = m.data, m.mediaType, true
	return nil
}

// ownLayer describes layer l as the archive's own manifest serves it: the blob d of the
// given size and media type, checked against what the blob is (its size, its compression)
// and, when it is uncompressed, against l's diffID.
func (img *Image) ownLayer(l Layer, d digest.Digest, size int64, mediaType string) (Layer, error) {
	name := layout.BlobName(d)
	mem, err := img.r.ix.Resolve(name)
	if err != nil {
		return l, err
	}
	// A size of -1 says nothing (containers/image's "unknown"; darc's own writer leaves it in
	// manifests of layers it served decompressed); any other size must be the blob's.
	if size >= 0 && mem.Size != size {
		return l, fmt.Errorf("%w: the descriptor says %d bytes, member %q has %d", ErrSizeMismatch, size, name, mem.Size)
	}
	c, _, err := img.r.sniff(mem)
	if err != nil {
		return l, err
	}
	said, known := layerMediaTypeCompression(mediaType)
	switch {
	case !known:
		return l, fmt.Errorf("%w: media type %q is not a layer type", ErrInvalidManifest, mediaType)
	case said != c:
		return l, fmt.Errorf("%w: media type %q says %s, the blob is %s", ErrInvalidManifest, mediaType, said, c)
	case c == Uncompressed && d != l.DiffID:
		return l, fmt.Errorf("%w: the blob is uncompressed, so its digest is its diffID, and the config's diffID is %s", ErrDigestMismatch, l.DiffID)
	}
	l.Name, l.Member, l.Digest, l.Size, l.MediaType, l.Compression = name, mem, d, mem.Size, mediaType, c
	return l, nil
}

// layerMediaTypeCompression returns the compression a layer media type states; false for a
// type that is no layer type (or one darc cannot serve).
func layerMediaTypeCompression(mt string) (Compression, bool) {
	switch mt {
	case manifest.DockerV2SchemaLayerMediaTypeUncompressed, manifest.DockerV2Schema2ForeignLayerMediaType,
		imgspecv1.MediaTypeImageLayer, imgspecv1.MediaTypeImageLayerNonDistributable: //nolint:staticcheck // still written
		return Uncompressed, true
	case manifest.DockerV2Schema2LayerMediaType, manifest.DockerV2Schema2ForeignLayerMediaTypeGzip,
		imgspecv1.MediaTypeImageLayerGzip, imgspecv1.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck // still written
		return Gzip, true
	case imgspecv1.MediaTypeImageLayerZstd, imgspecv1.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // still written
		return Zstd, true
	}
	return Uncompressed, false
}

// maxUnindexedManifest bounds the blobs searched by unindexedManifest.
const maxUnindexedManifest = 64 << 10

// unindexedManifest looks for a manifest blob of the OCI layout that uses config id but that
// index.json does not list: Docker 25+ saves an untagged image's manifest as a blob without
// naming it in index.json (unless the index would otherwise be empty).
func (r *Reader) unindexedManifest(id digest.Digest) (ociManifest, bool) {
	needle := []byte(id.String())
	for _, m := range r.ix.members {
		if m.Type != tar.TypeReg || m.Size > maxUnindexedManifest || !strings.HasPrefix(m.Name, layout.SHA256BlobPrefix) {
			continue
		}
		data, _, err := r.ix.ReadSmall(m.Name, maxUnindexedManifest)
		if err != nil || !bytes.Contains(data, needle) {
			continue
		}
		d, ok := layout.DigestFromName(m.Name, false)
		if !ok || digest.FromBytes(data) != d {
			continue
		}
		mt := manifest.GuessMIMEType(data)
		if manifest.MIMETypeIsMultiImage(mt) {
			continue
		}
		parsed, err := manifest.FromBlob(data, mt)
		if err != nil || parsed.ConfigInfo().Digest != id {
			continue
		}
		return ociManifest{data: data, mediaType: mt, digest: d, parsed: parsed}, true
	}
	return ociManifest{}, false
}

// loadOCIOnly reads an OCI layout archive that has no manifest.json (BuildKit's OCI
// exporter, `docker save` of an OCI-only export): one image per top-level entry of index.json.
func (r *Reader) loadOCIOnly() error {
	l, err := r.ociLayoutInfo()
	if err != nil {
		return err
	}
	if l == nil || len(l.tops) == 0 {
		return fmt.Errorf("%w: index.json names no usable image manifest", ErrNotDockerArchive)
	}
	for i, m := range l.tops {
		it := layout.ManifestItem{Config: layout.BlobName(m.parsed.ConfigInfo().Digest), RepoTags: []string{}}
		for _, n := range m.names {
			if _, err := reference.ParseRepoTag(n); err == nil {
				it.RepoTags = append(it.RepoTags, n)
			}
		}
		for _, li := range m.parsed.LayerInfos() {
			it.Layers = append(it.Layers, layout.BlobName(li.Digest))
		}
		r.images = append(r.images, r.imageFromItem(i, it))
	}
	return nil
}
