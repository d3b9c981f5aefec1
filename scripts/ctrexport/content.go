package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types that ocispec does not define.
const (
	mtDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mtDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mtInToto             = "application/vnd.in-toto+json"

	// BuildKit's annotations on an attestation manifest's index descriptor.
	annRefType      = "vnd.docker.reference.type"
	annRefDigest    = "vnd.docker.reference.digest"
	refTypeAttest   = "attestation-manifest"
	annPredicateTyp = "in-toto.io/predicate-type"
	slsaProvenance  = "https://slsa.dev/provenance/v0.2"
)

// epoch is the one timestamp in every generated file: tar mtimes, config created, history.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// blob is one piece of content with its descriptor. diffID is set for layers.
type blob struct {
	desc   ocispec.Descriptor
	data   []byte
	diffID digest.Digest
}

func newBlob(mediaType string, data []byte) *blob {
	return &blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// withMediaType is the same bytes under another media type (Docker vs OCI); the digest is the same.
func (b *blob) withMediaType(mt string) *blob {
	c := *b
	c.desc.MediaType = mt
	return &c
}

func mustJSON(v any) []byte {
	p, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return p
}

type file struct {
	name string // directories end in "/"
	mode int64
	body string
}

// layer builds a real tar of files (fixed owner, mode and mtime) and gzips it with a fixed
// header, so the same Go release always gives the same bytes.
func layer(mediaType string, files ...file) *blob {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Format: tar.FormatUSTAR, Uname: "root", Gname: "root"}
		if f.name[len(f.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	var gb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gb, gzip.BestCompression)
	if err != nil {
		panic(err)
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	b := newBlob(mediaType, gb.Bytes())
	b.diffID = digest.FromBytes(tb.Bytes())
	return b
}

// image is a manifest with its config and layers.
type image struct {
	manifest *blob
	config   *blob
	layers   []*blob
	platform *ocispec.Platform // the config's; also on the index descriptor of a child
	attest   bool              // a BuildKit attestation manifest (not a platform)
	annots   map[string]string // annotations on the index descriptor
}

func (im *image) blobs() []*blob { return append([]*blob{im.manifest, im.config}, im.layers...) }

// indexDesc is the descriptor of im as an index (or list) child.
func (im *image) indexDesc() ocispec.Descriptor {
	d := im.manifest.desc
	d.Platform = im.platform
	d.Annotations = im.annots
	return d
}

type imageSpec struct {
	docker   bool // Docker schema2 media types instead of OCI
	platform ocispec.Platform
	env      string
	layers   []*blob
}

// newImage makes config and manifest for layers, with the config's os/architecture/variant
// and rootfs.diff_ids set from the platform and the layers.
func newImage(s imageSpec) *image {
	mtManifest, mtConfig := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	if s.docker {
		mtManifest, mtConfig = mtDockerManifest, mtDockerConfig
	}
	created := epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: s.platform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", s.env},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: ocispec.RootFS{Type: "layers"},
	}
	for i, l := range s.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("darc ctrexport layer %d", i+1)})
	}
	config := newBlob(mtConfig, mustJSON(cfg))
	m := ocispec.Manifest{
		Versioned: ocispecs.Versioned{SchemaVersion: 2},
		MediaType: mtManifest,
		Config:    config.desc,
	}
	for _, l := range s.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	p := s.platform
	return &image{manifest: newBlob(mtManifest, mustJSON(m)), config: config, layers: s.layers, platform: &p}
}

// attestation makes a BuildKit-style attestation manifest for subject: an OCI manifest whose
// config says unknown/unknown and whose one layer is an in-toto SLSA provenance statement.
func attestation(subject *image, name string) *image {
	stmt := map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": slsaProvenance,
		"subject": []map[string]any{{
			"name":   "pkg:docker/" + name + "?platform=" + platformString(*subject.platform, "%2F"),
			"digest": map[string]string{"sha256": subject.manifest.desc.Digest.Encoded()},
		}},
		"predicate": map[string]any{
			"builder":   map[string]string{"id": "https://github.com/darc-dev/darc/scripts/ctrexport"},
			"buildType": "https://mobyproject.org/buildkit@v1",
			"metadata":  map[string]any{"buildStartedOn": epoch.Format(time.RFC3339), "buildFinishedOn": epoch.Format(time.RFC3339)},
		},
	}
	l := newBlob(mtInToto, mustJSON(stmt))
	l.desc.Annotations = map[string]string{annPredicateTyp: slsaProvenance}
	cfg := map[string]any{
		"architecture": "unknown",
		"os":           "unknown",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{l.desc.Digest.String()}},
	}
	config := newBlob(ocispec.MediaTypeImageConfig, mustJSON(cfg))
	m := ocispec.Manifest{
		Versioned: ocispecs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
		Layers:    []ocispec.Descriptor{l.desc},
	}
	return &image{
		manifest: newBlob(ocispec.MediaTypeImageManifest, mustJSON(m)),
		config:   config,
		layers:   []*blob{l},
		platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"},
		attest:   true,
		annots: map[string]string{
			annRefType:   refTypeAttest,
			annRefDigest: subject.manifest.desc.Digest.String(),
		},
	}
}

// index is an OCI index or a Docker manifest list of children.
type index struct {
	blob     *blob
	children []*image
}

func newIndex(mediaType string, children ...*image) *index {
	ix := ocispec.Index{Versioned: ocispecs.Versioned{SchemaVersion: 2}, MediaType: mediaType}
	for _, c := range children {
		ix.Manifests = append(ix.Manifests, c.indexDesc())
	}
	return &index{blob: newBlob(mediaType, mustJSON(ix)), children: children}
}

func platformString(p ocispec.Platform, sep string) string {
	s := p.OS + sep + p.Architecture
	if p.Variant != "" {
		s += sep + p.Variant
	}
	return s
}

// world is all the content the fixtures are made from.
type world struct {
	multi      *index // OCI index: amd64, arm64/v8, arm/v7, attestation for amd64
	list       *index // Docker manifest list: amd64, arm64/v8, arm/v7 (Docker schema2)
	single     *image // linux/amd64 bare OCI manifest
	foreign    *image // linux/amd64 bare Docker schema2 manifest, second layer foreign
	foreignURL string
}

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	armv7 = ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

func makeWorld() *world {
	base := layer(ocispec.MediaTypeImageLayerGzip,
		file{name: "etc/", mode: 0o755},
		file{name: "etc/darc-multi-base", mode: 0o644, body: "darc multi-platform base layer\n"},
		file{name: "etc/motd", mode: 0o644, body: "Welcome to a darc multi-platform test image (containerd exporter fixture).\n"},
	)
	perPlatform := func(p ocispec.Platform) *blob {
		ps := platformString(p, "/")
		return layer(ocispec.MediaTypeImageLayerGzip,
			file{name: "etc/", mode: 0o755},
			file{name: "etc/darc-platform", mode: 0o644, body: ps + "\n"},
			file{name: "usr/", mode: 0o755},
			file{name: "usr/share/", mode: 0o755},
			file{name: "usr/share/darc/", mode: 0o755},
			file{name: "usr/share/darc/arch.txt", mode: 0o644, body: "This layer exists only in the " + ps + " image.\n"},
		)
	}
	var children []*image
	var dchildren []*image
	for _, p := range []ocispec.Platform{amd64, arm64, armv7} {
		top := perPlatform(p)
		env := "DARC_PLATFORM=" + platformString(p, "/")
		children = append(children, newImage(imageSpec{platform: p, env: env, layers: []*blob{base, top}}))
		dchildren = append(dchildren, newImage(imageSpec{docker: true, platform: p, env: env,
			layers: []*blob{base.withMediaType(mtDockerLayerGzip), top.withMediaType(mtDockerLayerGzip)}}))
	}
	children = append(children, attestation(children[0], "example.com/darc/multi:1"))

	app := layer(ocispec.MediaTypeImageLayerGzip,
		file{name: "app/", mode: 0o755},
		file{name: "app/single.txt", mode: 0o644, body: "the second image: one platform, linux/amd64\n"},
	)
	single := newImage(imageSpec{platform: amd64, env: "DARC_IMAGE=single", layers: []*blob{base, app}})

	const foreignURL = "https://example.com/darc/foreign/layer.tar.gz"
	fl := layer(mtDockerForeignGzip,
		file{name: "foreign/", mode: 0o755},
		file{name: "foreign/README", mode: 0o644, body: "a non-distributable layer: fetched from its URL, never shipped\n"},
	)
	fl.desc.URLs = []string{foreignURL}
	foreign := newImage(imageSpec{docker: true, platform: amd64, env: "DARC_IMAGE=foreign",
		layers: []*blob{base.withMediaType(mtDockerLayerGzip), fl}})

	return &world{
		multi:      newIndex(ocispec.MediaTypeImageIndex, children...),
		list:       newIndex(mtDockerManifestList, dchildren...),
		single:     single,
		foreign:    foreign,
		foreignURL: foreignURL,
	}
}
