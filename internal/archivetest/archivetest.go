package archivetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Errors returned by Build and BuildBytes.
var (
	// ErrUnsupportedCompression: Options.Compression names a format this package cannot
	// write (bzip2: Go has no bzip2 writer; use a fixture made by the real tool instead).
	ErrUnsupportedCompression = errors.New("archivetest: unsupported compression")
	// ErrInvalidOptions: the options do not fit the layout (e.g. GzipMembers with Crane).
	ErrInvalidOptions = errors.New("archivetest: invalid options")
	// ErrInvalidImage: an Image cannot be written in the layout (bad tag, bad config, or
	// something the real tool refuses, such as a layerless image for Docker).
	ErrInvalidImage = errors.New("archivetest: invalid image")
)

// Image describes one image to put into an archive.
type Image struct {
	// Tags are references as a user would type them ("busybox", "busybox:latest",
	// "example.com/a:1"); nil means untagged. A name without a tag means ":latest". Each
	// layout writes them the way its tool does: ContainersImage fully qualified
	// ("docker.io/library/busybox:latest"), Docker24/Docker25/BuildKit/Legacy familiar
	// ("busybox:latest"), Crane and CraneLegacy verbatim as given (Crane appends ":latest"
	// when the tag is implicit, crane --format legacy does not). Digest references are not
	// accepted. The same tag on two different images is allowed: containers/image writes
	// such archives (both entries list it; repositories keeps the last), and a reader must
	// notice the ambiguity.
	Tags []string
	// Layers are uncompressed layer tars, base first (use Layer to make them). The same
	// bytes may appear more than once, in one image or across images.
	Layers [][]byte
	// Blobs optionally gives, for each layer, the compressed blob a registry serves for it
	// (gzip or zstd, told apart by their magic), for the layouts that store or hash registry
	// blobs: Crane and BuildKit store it instead of compressing the layer themselves, and
	// CraneLegacy derives its v1 ids from its digest. nil, or a nil element, means compress with
	// Go's gzip (zstd with Options.ZstdLayers). A blob must decompress to its layer. If a layer
	// occurs more than once, the first blob given for it is used.
	Blobs [][]byte
	// Config, if nil, is generated: a Docker/OCI image config with architecture amd64, os
	// linux, rootfs {type: layers, diff_ids: sha256 of each layer}, one history entry per
	// layer and a fixed creation time (see GenerateConfig). Images with equal configs are the
	// same image: layouts other than Crane merge them into one manifest.json entry.
	Config []byte
}

// Layout selects which tool's output Build imitates.
type Layout int

const (
	// ContainersImage is what containers/image writes (skopeo copy … docker-archive:,
	// podman save [-m], buildah push). Per image, in copy order: each new layer as
	// "<diffid-hex>.tar", then the config as "<config-hex>.json", then for each layer a legacy
	// directory "<v1id>/" with "layer.tar" (a symlink to "../<diffid-hex>.tar"), "VERSION"
	// ("1.0") and "json" (v1 metadata; the top one carries the config's architecture, config,
	// container, container_config, created, docker_version and os, absent ones as null). Then
	// manifest.json and repositories (compact JSON, no newline). Members have mode 0444 (the
	// symlinks mode 0), uid/gid 0, mtime 0; there are no directory entries. A layer or legacy
	// directory is written once. All tags of one image are in one entry, fully qualified;
	// untagged images have "RepoTags": [] and no repositories entry (repositories is "{}" if
	// nothing is tagged). The v1 ids follow containers/image's computation. Byte-identical to
	// what podman 4.3, skopeo 1.9 and buildah 1.28 write.
	ContainersImage Layout = iota

	// Docker24 is `docker save` of Docker up to 24 (moby image/tarexport, graphdriver
	// store): everything is written to a temporary directory that is then tarred, so members
	// are in directory-walk order (sorted by path component) with directory entries
	// "<v1id>/" (040755) and files 0100644 (moby adds the old file-type bits to the mode),
	// user and group "root", uid/gid 0. Per layer "<v1id>/VERSION", "<v1id>/json" (moby's
	// V1Image JSON) and "<v1id>/layer.tar"; a layer whose diffID was already saved under
	// another v1 id is a symlink "../<other-v1id>/layer.tar", which can sort before its
	// target. The config is "<config-hex>.json". manifest.json and repositories are written
	// with json.Encoder (trailing newline); tags are familiar ("busybox:latest"); an image
	// without tags has "RepoTags": null, and repositories is omitted when nothing is tagged.
	// v1 ids follow moby's v1.CreateID. mtimes: image creation time, manifest.json and
	// repositories 0 (Docker leaves a symlinked v1 directory at the wall clock; Build uses the
	// creation time). Byte-identical to Docker 20.10's output apart from that.
	Docker24

	// Docker25 is `docker save` of Docker 25 and later with the graphdriver store: an OCI
	// image layout inside a docker-archive. Directory entries "blobs/" and "blobs/sha256/";
	// blobs for each uncompressed layer (named by diffID), each config, each image's OCI
	// manifest, and also the legacy v1 JSON of each layer (unreferenced). index.json has one
	// manifest descriptor per tag annotated with "io.containerd.image.name" (full name) and
	// "org.opencontainers.image.ref.name" (the tag); an untagged image gets a plain descriptor
	// only if no descriptor precedes it (Docker's own quirk). oci-layout is
	// `{"imageLayoutVersion": "1.0.0"}`. manifest.json points into blobs/sha256/ and has
	// LayerSources for every layer (media type application/vnd.oci.image.layer.v1.tar);
	// repositories maps each tag to the top layer's diffID hex. Walk order, like Docker24, but
	// modes without type bits and no user names, as current moby writes headers.
	Docker25

	// Crane is go-containerregistry's tarball.MultiRefWrite as `crane pull` uses it: per
	// reference (each tag its own v1.Image), the config as "sha256:<config-hex>" (a colon,
	// no extension; written again for every reference, so the same image with two tags has a
	// duplicate member), then each layer not yet written as "<compressed-hex>.tar.gz" (the
	// registry blob, see Image.Blobs; ".tar.zst" for zstd). manifest.json is last, one entry
	// per reference, sorted by RepoTags; no LayerSources, no repositories. Headers: mode
	// 0644, mtime 0. An untagged image (written by digest) has "RepoTags": null; `crane pull`
	// itself tags such an image "<repo>:i-was-a-digest". Byte-identical to crane v0.22.1 given
	// the same registry blobs and order.
	Crane

	// CraneLegacy is `crane pull --format legacy` (go-containerregistry legacy/tarball):
	// images sorted by config digest; per image "<config-hex>.json", then per new v1 id
	// "<v1id>/layer.tar" (always the full uncompressed layer, never a symlink, so a layer in
	// two different stacks is stored twice), "<v1id>/json", "<v1id>/VERSION"; then
	// manifest.json and repositories (keyed by the tag string up to its last colon). Tags
	// are written exactly as given and sorted. Mode 0644, mtime 0, no directory entries. The
	// v1 ids hash the registry blob's digest (see Image.Blobs). Byte-identical to crane v0.22.1.
	CraneLegacy

	// Legacy is `docker save` before Docker 1.10: no manifest.json and no config blob.
	// "repositories" (familiar names → tag → top layer id, with a trailing newline) plus, per
	// layer, "<id>/", "<id>/VERSION", "<id>/json" (v1 JSON with "id", a "parent" chain, and
	// on the top layer the image's config fields) and "<id>/layer.tar"; walk order and
	// headers as Docker24. Layer ids are random-looking (derived from Options.Seed and the
	// layer chain). A reader has to find untagged images as the v1 ids nobody names as parent.
	Legacy

	// BuildKit is BuildKit's docker exporter (`docker buildx build -o type=docker`), which
	// is containerd's archive exporter: oci-layout, index.json (no mediaType field; one
	// descriptor per name), blobs/sha256/ with gzip layer blobs, config and manifest (Docker
	// media types; OCI ones when a layer is zstd, as with Options.ZstdLayers), and a manifest.json without
	// LayerSources or Parent and with familiar RepoTags; no repositories. Members sorted by
	// name, duplicates dropped; blobs and oci-layout mode 0444, index.json and manifest.json
	// 0644, directories 0755, mtime 0. `docker save` of Docker 25+ with the containerd image
	// store uses the same exporter and so has the same shape.
	BuildKit
)

// Layouts lists every Layout, for table tests.
func Layouts() []Layout {
	return []Layout{ContainersImage, Docker24, Docker25, Crane, CraneLegacy, Legacy, BuildKit}
}

func (l Layout) String() string {
	switch l {
	case ContainersImage:
		return "ContainersImage"
	case Docker24:
		return "Docker24"
	case Docker25:
		return "Docker25"
	case Crane:
		return "Crane"
	case CraneLegacy:
		return "CraneLegacy"
	case Legacy:
		return "Legacy"
	case BuildKit:
		return "BuildKit"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// Options modify how Build writes an archive.
type Options struct {
	Layout Layout
	// GzipMembers stores layer members gzip-compressed under their usual uncompressed name
	// (".tar" / "layer.tar"), as hand-made archives do. For ContainersImage, Docker24,
	// CraneLegacy and Legacy; an error with layouts whose layer names are digests of their
	// content (Docker25, BuildKit) or that always compress (Crane).
	GzipMembers bool
	// XzMembers is GzipMembers with xz, which no manifest media type describes: a reader
	// serves such a layer decompressed. For the same layouts as GzipMembers; not with it.
	XzMembers bool
	// ZstdLayers makes Crane store layers as "<hex>.tar.zst" and BuildKit as zstd blobs with
	// OCI media types (as with compression=zstd). An error with other layouts.
	ZstdLayers bool
	// ManifestFirst writes manifest.json (and then repositories) as the first members
	// instead of where the layout puts them.
	ManifestFirst bool
	// DotSlash prefixes every member name with "./", as `tar -C dir -c .` does. Names
	// inside manifest.json and symlink targets are unchanged.
	DotSlash bool
	// Compression compresses the whole archive: "" (none), "gzip", "zstd" or "xz". "bzip2"
	// returns ErrUnsupportedCompression.
	Compression string
	// Seed feeds the only randomness: Legacy layer ids.
	Seed int64
}

// ExpectedImage is what a correct reader must report for one image of an archive made by Build.
type ExpectedImage struct {
	// Tags are fully normalized ("docker.io/library/busybox:latest"), in RepoTags order;
	// an empty, non-nil slice when untagged.
	Tags []string
	// ID is the sha256 of the config bytes. Empty for Legacy, whose archives have no config:
	// a reader has to synthesize one.
	ID      digest.Digest
	DiffIDs []digest.Digest
	// Sizes is the size of each layer as stored in the archive: the compressed size when the
	// member is compressed, the target's size when the member is a link.
	Sizes []int64
}

// Build writes the archive for images in the given layout to w.
func Build(w io.Writer, images []Image, opts Options) error {
	p, err := newPlan(images, opts)
	if err != nil {
		return err
	}
	members, err := p.members()
	if err != nil {
		return err
	}
	return writeArchive(w, members, opts)
}

// BuildBytes is Build into memory.
func BuildBytes(images []Image, opts Options) ([]byte, error) {
	var buf bytes.Buffer
	if err := Build(&buf, images, opts); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Expect is what a correct reader must report for the archive that Build(images, opts) writes,
// in manifest.json order: for Crane one entry per reference (as that archive has), for the other
// layouts one per distinct image. Tags are normalized with distribution/reference, a name without
// a tag (as crane --format legacy writes it) as ":latest". For Legacy, which has no manifest.json, the order is input
// order and is not defined by the archive; compare as a set. Expect returns nil if Build
// would fail.
func Expect(images []Image, opts Options) []ExpectedImage {
	p, err := newPlan(images, opts)
	if err != nil {
		return nil
	}
	var entries []*entry
	switch opts.Layout {
	case Crane:
		entries = p.craneExpand()
		craneSort(entries)
	case CraneLegacy:
		entries = p.sortedByConfig()
	default:
		entries = p.groups
	}
	out := make([]ExpectedImage, 0, len(entries))
	for _, e := range entries {
		x := ExpectedImage{Tags: []string{}, ID: e.id}
		if opts.Layout == Legacy {
			x.ID = ""
		}
		for _, t := range e.refs {
			x.Tags = append(x.Tags, t.String())
		}
		for _, l := range e.layers {
			x.DiffIDs = append(x.DiffIDs, l.diffID)
			x.Sizes = append(x.Sizes, int64(len(l.stored)))
		}
		out = append(out, x)
	}
	return out
}

// blob is one layer, with its bytes as the layout stores them.
type blob struct {
	diffID       digest.Digest
	raw          []byte // uncompressed tar
	stored       []byte // bytes of the member: raw, or compressed
	storedDigest digest.Digest
	// registry is the compressed form a registry serves (gzip), which crane's legacy
	// writer hashes for its v1 ids.
	registryDigest digest.Digest
	zstd           bool // stored is zstd-compressed (Crane, BuildKit)
}

// entry is one image as an archive entry: an input Image (or several merged by config).
type entry struct {
	raw     []string                // tags as the user wrote them, deduplicated
	refs    []reference.NamedTagged // normalized, parallel to raw
	config  []byte
	id      digest.Digest
	layers  []*blob
	created time.Time
	cfg     parsedConfig
}

type plan struct {
	opts   Options
	groups []*entry // input order, merged by config digest
	inputs []*entry // input order, not merged (Crane)
}

func newPlan(images []Image, opts Options) (*plan, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	p := &plan{opts: opts}
	blobs := map[digest.Digest]*blob{} // lookup only
	byID := map[digest.Digest]*entry{} // lookup only
	var comp compressor
	for i, img := range images {
		e := &entry{}
		if img.Blobs != nil && len(img.Blobs) != len(img.Layers) {
			return nil, fmt.Errorf("%w: image %d: %d blobs for %d layers", ErrInvalidImage, i, len(img.Blobs), len(img.Layers))
		}
		for j, l := range img.Layers {
			d := digest.FromBytes(l)
			b, ok := blobs[d]
			if !ok {
				var err error
				var given []byte
				if j < len(img.Blobs) {
					given = img.Blobs[j]
				}
				b, err = newBlob(&comp, l, d, given, opts)
				if err != nil {
					return nil, err
				}
				blobs[d] = b
			}
			e.layers = append(e.layers, b)
		}
		e.config = img.Config
		if e.config == nil {
			diffIDs := make([]digest.Digest, len(e.layers))
			for j, b := range e.layers {
				diffIDs[j] = b.diffID
			}
			e.config = GenerateConfig(diffIDs)
		}
		if err := json.Unmarshal(e.config, &e.cfg); err != nil {
			return nil, fmt.Errorf("%w: image %d: config: %w", ErrInvalidImage, i, err)
		}
		if e.cfg.Created != nil {
			e.created = e.cfg.Created.UTC()
		} else {
			e.created = time.Unix(0, 0).UTC()
		}
		e.id = digest.FromBytes(e.config)
		for _, t := range img.Tags {
			ref, err := parseTag(t)
			if err != nil {
				return nil, fmt.Errorf("%w: image %d: tag %q: %w", ErrInvalidImage, i, t, err)
			}
			e.addTag(t, ref)
		}
		if err := checkImage(e, opts.Layout); err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		p.inputs = append(p.inputs, e)

		if g, ok := byID[e.id]; ok {
			for k := range e.raw {
				g.addTag(e.raw[k], e.refs[k])
			}
			continue
		}
		g := *e
		g.raw = append([]string(nil), e.raw...)
		g.refs = append([]reference.NamedTagged(nil), e.refs...)
		byID[e.id] = &g
		p.groups = append(p.groups, &g)
	}
	if opts.Layout == Crane && len(images) == 0 {
		// crane's tarball writer refuses: "set of images is empty".
		return nil, fmt.Errorf("%w: Crane cannot write an empty archive", ErrInvalidImage)
	}
	return p, nil
}

func (e *entry) addTag(raw string, ref reference.NamedTagged) {
	for _, r := range e.refs {
		if r.String() == ref.String() {
			return
		}
	}
	e.raw = append(e.raw, raw)
	e.refs = append(e.refs, ref)
}

func parseTag(s string) (reference.NamedTagged, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, err
	}
	if _, ok := named.(reference.Canonical); ok {
		return nil, errors.New("digest references are not tags")
	}
	nt, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return nil, errors.New("not a tag")
	}
	return nt, nil
}

func checkOptions(opts Options) error {
	if opts.Layout < ContainersImage || opts.Layout > BuildKit {
		return fmt.Errorf("%w: unknown layout %d", ErrInvalidOptions, int(opts.Layout))
	}
	if opts.GzipMembers || opts.XzMembers {
		switch opts.Layout {
		case ContainersImage, Docker24, CraneLegacy, Legacy:
		default:
			return fmt.Errorf("%w: GzipMembers and XzMembers do not apply to %v", ErrInvalidOptions, opts.Layout)
		}
		if opts.GzipMembers && opts.XzMembers {
			return fmt.Errorf("%w: GzipMembers and XzMembers together", ErrInvalidOptions)
		}
	}
	if opts.ZstdLayers && opts.Layout != Crane && opts.Layout != BuildKit {
		return fmt.Errorf("%w: ZstdLayers does not apply to %v", ErrInvalidOptions, opts.Layout)
	}
	switch opts.Compression {
	case "", "gzip", "zstd", "xz":
	case "bzip2":
		return fmt.Errorf("%w: %q: Go has no bzip2 writer", ErrUnsupportedCompression, opts.Compression)
	default:
		return fmt.Errorf("%w: %q", ErrUnsupportedCompression, opts.Compression)
	}
	return nil
}

// checkImage refuses what the modelled tool refuses.
func checkImage(e *entry, l Layout) error {
	if len(e.cfg.RootFS.DiffIDs) != len(e.layers) {
		return fmt.Errorf("%w: config has %d diff_ids, image has %d layers", ErrInvalidImage, len(e.cfg.RootFS.DiffIDs), len(e.layers))
	}
	for i, d := range e.cfg.RootFS.DiffIDs {
		if d != e.layers[i].diffID {
			return fmt.Errorf("%w: config diff_ids[%d] is %s, layer is %s", ErrInvalidImage, i, d, e.layers[i].diffID)
		}
	}
	switch l {
	case Docker24, Docker25, Legacy, CraneLegacy:
		if len(e.layers) == 0 {
			// moby: "empty export - not implemented"; crane legacy needs a top layer.
			return fmt.Errorf("%w: %v cannot save an image without layers", ErrInvalidImage, l)
		}
	}
	if l == CraneLegacy {
		if h := nonEmptyHistory(e.cfg.History); len(h) != 0 && len(h) != len(e.layers) {
			return fmt.Errorf("%w: history has %d non-empty entries for %d layers", ErrInvalidImage, len(h), len(e.layers))
		}
	}
	return nil
}

func newBlob(c *compressor, raw []byte, d digest.Digest, given []byte, opts Options) (*blob, error) {
	b := &blob{diffID: d, raw: raw, stored: raw, storedDigest: d}
	registry := given
	if registry != nil {
		dec, err := decompressBlob(registry)
		if err != nil || digest.FromBytes(dec) != d {
			return nil, fmt.Errorf("%w: blob for layer %s does not decompress to it (%w)", ErrInvalidImage, d, err)
		}
	}
	var err error
	switch opts.Layout {
	case Crane, BuildKit:
		switch {
		case registry != nil:
			b.stored = registry
		case opts.ZstdLayers:
			b.stored = c.zstd(raw)
		default:
			if b.stored, err = c.gzip(raw); err != nil {
				return nil, err
			}
		}
		b.storedDigest = digest.FromBytes(b.stored)
		b.zstd = isZstd(b.stored)
	default:
		switch {
		case opts.GzipMembers:
			if b.stored, err = c.gzip(raw); err != nil {
				return nil, err
			}
			b.storedDigest = digest.FromBytes(b.stored)
		case opts.XzMembers:
			if b.stored, err = c.xz(raw); err != nil {
				return nil, err
			}
			b.storedDigest = digest.FromBytes(b.stored)
		}
	}
	if opts.Layout == CraneLegacy {
		if registry == nil {
			if registry, err = c.gzip(raw); err != nil {
				return nil, err
			}
		}
		b.registryDigest = digest.FromBytes(registry)
	}
	return b, nil
}

// craneTagString is how go-containerregistry's tarball writer prints a tag: the string as
// given, with ":latest" appended when the tag was implicit.
func craneTagString(raw string) string {
	named, err := reference.ParseNormalizedNamed(raw)
	if err == nil && reference.IsNameOnly(named) {
		return raw + ":latest"
	}
	return raw
}

// sortedByConfig is crane legacy's image order: by config digest, tags sorted.
func (p *plan) sortedByConfig() []*entry {
	out := make([]*entry, 0, len(p.groups))
	for _, g := range p.groups {
		c := *g
		idx := make([]int, len(g.raw))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return g.raw[idx[a]] < g.raw[idx[b]] })
		c.raw = make([]string, len(idx))
		c.refs = make([]reference.NamedTagged, len(idx))
		for i, k := range idx {
			c.raw[i], c.refs[i] = g.raw[k], g.refs[k]
		}
		out = append(out, &c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].id.Encoded() < out[j].id.Encoded() })
	return out
}

func (p *plan) members() ([]member, error) {
	switch p.opts.Layout {
	case ContainersImage:
		return p.containersImage()
	case Docker24:
		return p.docker24()
	case Docker25:
		return p.docker25()
	case Crane:
		return p.crane()
	case CraneLegacy:
		return p.craneLegacy()
	case Legacy:
		return p.legacy()
	case BuildKit:
		return p.buildKit()
	}
	return nil, fmt.Errorf("%w: unknown layout %d", ErrInvalidOptions, int(p.opts.Layout))
}

// Variant is a named way of building an archive: a layout real tools write, or a variant
// hand-made or recompressed archives have.
type Variant struct {
	Name string
	Opts Options
}

// Variants lists every layout plus the variants readers meet in the wild, for table tests.
// Build accepts every one of them.
func Variants() []Variant {
	var vs []Variant
	for _, l := range Layouts() {
		vs = append(vs, Variant{l.String(), Options{Layout: l}})
	}
	return append(vs,
		Variant{"ContainersImage gzip members", Options{Layout: ContainersImage, GzipMembers: true}},
		Variant{"Docker24 gzip members", Options{Layout: Docker24, GzipMembers: true}},
		Variant{"Docker24 xz members", Options{Layout: Docker24, XzMembers: true}},
		Variant{"ContainersImage manifest first", Options{Layout: ContainersImage, ManifestFirst: true}},
		Variant{"Docker24 dot-slash", Options{Layout: Docker24, DotSlash: true}},
		Variant{"Crane zstd layers", Options{Layout: Crane, ZstdLayers: true}},
		Variant{"BuildKit zstd layers", Options{Layout: BuildKit, ZstdLayers: true}},
		Variant{"whole archive gzip", Options{Layout: ContainersImage, Compression: "gzip"}},
		Variant{"whole archive zstd", Options{Layout: Docker25, Compression: "zstd"}},
		Variant{"whole archive xz", Options{Layout: Docker24, Compression: "xz"}},
	)
}

// SharedImages are three images sharing layers, as table tests want them: two tags on the
// first, the third untagged, with a layer of 1.2 MB, larger than a reader's or writer's
// buffers.
func SharedImages() []Image {
	base := Layer(1, 3, 3000)
	mid := Layer(2, 2, 5000)
	return []Image{
		{Tags: []string{"example.com/app/one:1", "example.com/app/one:latest"}, Layers: [][]byte{base, mid}},
		{Tags: []string{"busybox:latest"}, Layers: [][]byte{base, mid, Layer(3, 1, 100)}},
		{Layers: [][]byte{base, Layer(4, 3, 400_000)}},
	}
}
