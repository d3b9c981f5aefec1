package archivetest

import (
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// OwnManifest describes a one-image archive with an OCI layout beside manifest.json, as
// Docker 25+ writes it, whose own manifest can be made to lie: manifest.json (what docker
// 20.10 reads) names Stored, a good blob of Layer, while the OCI manifest names OCIBlob (when
// not nil: another blob, stored too) with OCIMediaType, and Edit may change the manifest
// before it is written.
type OwnManifest struct {
	Layer        []byte // the uncompressed layer tar; the config's diffID is its digest
	Stored       []byte // the blob manifest.json names: Layer, or Layer compressed (gzip)
	OCIBlob      []byte // the blob the OCI manifest names; nil: Stored
	OCIMediaType string // its media type; "": the OCI type for Stored's compression
	Edit         func(m *imgspecv1.Manifest)
}

// OwnManifestArchive writes o as a tar: blobs/sha256/ (layers, config, manifest), index.json
// naming the manifest as docker.io/library/busybox:1, oci-layout and manifest.json with that
// tag. It returns the archive and the image ID.
func OwnManifestArchive(o OwnManifest) ([]byte, digest.Digest) {
	cfg := GenerateConfig([]digest.Digest{digest.FromBytes(o.Layer)})
	id := digest.FromBytes(cfg)
	blob := func(b []byte) (string, digest.Digest) {
		d := digest.FromBytes(b)
		return "blobs/sha256/" + d.Encoded(), d
	}
	storedName, _ := blob(o.Stored)
	oci, mt := o.OCIBlob, o.OCIMediaType
	if oci == nil {
		oci = o.Stored
	}
	if mt == "" {
		mt = imgspecv1.MediaTypeImageLayer
		if isGzip(oci) {
			mt = imgspecv1.MediaTypeImageLayerGzip
		}
	}
	ociName, ociDigest := blob(oci)
	m := imgspecv1.Manifest{
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: id, Size: int64(len(cfg))},
		Layers:    []imgspecv1.Descriptor{{MediaType: mt, Digest: ociDigest, Size: int64(len(oci))}},
	}
	m.SchemaVersion = 2
	if o.Edit != nil {
		o.Edit(&m)
	}
	mdata := mustJSON(m)
	manifestName, manifestDigest := blob(mdata)
	index := imgspecv1.Index{MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{{
		MediaType: imgspecv1.MediaTypeImageManifest, Digest: manifestDigest, Size: int64(len(mdata)),
		Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/busybox:1", imgspecv1.AnnotationRefName: "1"},
	}}}
	index.SchemaVersion = 2
	entries := []Entry{{Name: storedName, Body: o.Stored}}
	if ociName != storedName {
		entries = append(entries, Entry{Name: ociName, Body: oci})
	}
	cfgName := "blobs/sha256/" + id.Encoded()
	entries = append(entries,
		Entry{Name: cfgName, Body: cfg},
		Entry{Name: manifestName, Body: mdata},
		Entry{Name: "index.json", Body: mustJSON(index)},
		Entry{Name: "oci-layout", Body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		Entry{Name: "manifest.json", Body: ManifestJSON([]ManifestItem{{Config: cfgName, RepoTags: []string{"busybox:1"}, Layers: []string{storedName}}})},
	)
	return Tar(entries), id
}

func isGzip(b []byte) bool { return len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b }
