package archivetest

import (
	"encoding/json"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// What a MultiPlatform archive holds of one platform's image.
const (
	HoldComplete = iota // manifest, config and layer
	HoldManifest        // the manifest only
	HoldNothing         // not even the manifest
)

// MultiPlatform describes a one-image archive in the shape Docker 25+ and containerd export
// a multi-platform image: an OCI index as a blob, named in index.json, whose children are
// the platforms, each with its own config and one uncompressed layer.
type MultiPlatform struct {
	Platforms []imgspecv1.Platform
	// Hold says what the archive holds of each platform (HoldComplete when short).
	Hold []int
	// Default, when not negative, is the platform manifest.json names; -1: no manifest.json
	// (an OCI-only archive, as `ctr export --skip-manifest-json` writes).
	Default int
	// Attestation adds a BuildKit attestation manifest for the first platform.
	Attestation bool
}

// MultiPlatformImage is what MultiPlatformArchive wrote.
type MultiPlatformImage struct {
	Index     digest.Digest   // the index blob's digest
	Manifests []digest.Digest // each platform's manifest digest
	IDs       []digest.Digest // each platform's config digest (image ID)
	Layers    [][]byte        // each platform's layer
}

// MultiPlatformArchive writes the archive o describes, tagged busybox:1.
func MultiPlatformArchive(o MultiPlatform) ([]byte, MultiPlatformImage) {
	var out MultiPlatformImage
	var entries []Entry
	blob := func(b []byte) (string, digest.Digest) {
		d := digest.FromBytes(b)
		return "blobs/sha256/" + d.Encoded(), d
	}
	var children []imgspecv1.Descriptor
	var items []ManifestItem
	for i, p := range o.Platforms {
		hold := HoldComplete
		if i < len(o.Hold) {
			hold = o.Hold[i]
		}
		layer := Layer(int64(100+i), 2, 64)
		cfg := platformConfig(GenerateConfig([]digest.Digest{digest.FromBytes(layer)}), p)
		layerName, layerDigest := blob(layer)
		cfgName, id := blob(cfg)
		m := imgspecv1.Manifest{
			MediaType: imgspecv1.MediaTypeImageManifest,
			Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: id, Size: int64(len(cfg))},
			Layers:    []imgspecv1.Descriptor{{MediaType: imgspecv1.MediaTypeImageLayer, Digest: layerDigest, Size: int64(len(layer))}},
		}
		m.SchemaVersion = 2
		mdata := mustJSON(m)
		mName, md := blob(mdata)
		children = append(children, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: md, Size: int64(len(mdata)), Platform: &p})
		out.Manifests, out.IDs, out.Layers = append(out.Manifests, md), append(out.IDs, id), append(out.Layers, layer)
		if hold <= HoldManifest {
			entries = append(entries, Entry{Name: mName, Body: mdata})
		}
		if hold == HoldComplete {
			entries = append(entries, Entry{Name: layerName, Body: layer}, Entry{Name: cfgName, Body: cfg})
		}
		if i == o.Default {
			items = []ManifestItem{{Config: cfgName, RepoTags: []string{"busybox:1"}, Layers: []string{layerName}}}
		}
	}
	if o.Attestation {
		entries, children = withAttestation(entries, children, blob)
	}
	index := imgspecv1.Index{MediaType: imgspecv1.MediaTypeImageIndex, Manifests: children}
	index.SchemaVersion = 2
	idata := mustJSON(index)
	iName, id := blob(idata)
	out.Index = id
	top := imgspecv1.Index{MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{{
		MediaType: imgspecv1.MediaTypeImageIndex, Digest: id, Size: int64(len(idata)),
		Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/busybox:1", imgspecv1.AnnotationRefName: "1"},
	}}}
	top.SchemaVersion = 2
	entries = append(entries,
		Entry{Name: iName, Body: idata},
		Entry{Name: "index.json", Body: mustJSON(top)},
		Entry{Name: "oci-layout", Body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	if items != nil {
		entries = append(entries, Entry{Name: "manifest.json", Body: ManifestJSON(items)})
	}
	return Tar(entries), out
}

// platformConfig sets cfg's platform to p (GenerateConfig writes linux/amd64).
func platformConfig(cfg []byte, p imgspecv1.Platform) []byte {
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		panic(err) // cannot happen: GenerateConfig's output
	}
	c["os"], c["architecture"] = p.OS, p.Architecture
	if p.Variant != "" {
		c["variant"] = p.Variant
	}
	return mustJSON(c)
}

// withAttestation adds an attestation manifest for children[0], as BuildKit writes it: an
// unknown/unknown platform and annotations naming the manifest it describes.
func withAttestation(entries []Entry, children []imgspecv1.Descriptor, blob func([]byte) (string, digest.Digest)) ([]Entry, []imgspecv1.Descriptor) {
	statement := []byte(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[]}`)
	sName, sd := blob(statement)
	cfg := []byte(`{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":["` + sd.String() + `"]}}`)
	cName, cd := blob(cfg)
	m := imgspecv1.Manifest{
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		Layers:    []imgspecv1.Descriptor{{MediaType: "application/vnd.in-toto+json", Digest: sd, Size: int64(len(statement))}},
	}
	m.SchemaVersion = 2
	mdata := mustJSON(m)
	mName, md := blob(mdata)
	children = append(children, imgspecv1.Descriptor{
		MediaType: imgspecv1.MediaTypeImageManifest, Digest: md, Size: int64(len(mdata)),
		Platform:    &imgspecv1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": children[0].Digest.String()},
	})
	return append(entries, Entry{Name: sName, Body: statement}, Entry{Name: cName, Body: cfg}, Entry{Name: mName, Body: mdata}), children
}
