package tarfile

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/layout"
)

// InstanceState says how much of one manifest of a manifest list the archive holds.
type InstanceState int

const (
	// Complete: the manifest, its config and every layer it does not mark as foreign.
	Complete InstanceState = iota
	// ManifestOnly: the manifest, but not its config or some layer.
	ManifestOnly
	// Absent: not even the manifest (Docker saves only the platforms it pulled).
	Absent
)

func (s InstanceState) String() string {
	switch s {
	case Complete:
		return "complete"
	case ManifestOnly:
		return "manifest only"
	}
	return "absent"
}

// AttestationAnnotation marks a manifest of a list that is not a platform but data about
// another manifest (BuildKit's provenance and SBOM attestations).
const AttestationAnnotation = "vnd.docker.reference.type"

// Instance is one manifest of a manifest list, as the list describes it (digest, size, media
// type, platform, annotations), with what the archive holds of it.
type Instance struct {
	imgspecv1.Descriptor
	State InstanceState
	// Attestation is set for a manifest that describes another (see AttestationAnnotation):
	// it is kept with the list but is no platform.
	Attestation bool

	manifest ociManifest // set unless State is Absent
}

// Uses reports whether the instance is a manifest the archive holds whose config is id.
func (in Instance) Uses(id digest.Digest) bool {
	return in.State != Absent && in.manifest.parsed.ConfigInfo().Digest == id
}

// PlatformString is "os/arch[/variant]", or "unknown" for an instance without a platform.
func (in Instance) PlatformString() string {
	if in.Platform == nil {
		return "unknown"
	}
	return platformString(*in.Platform)
}

func platformString(p imgspecv1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ManifestList is an OCI image index or a Docker manifest list of the archive's OCI layout
// that holds an image's manifest: the image is one platform of it.
type ManifestList struct {
	Digest    digest.Digest
	MediaType string
	Data      []byte
	Instances []Instance
}

// Platforms lists the instances that are platforms (attestations left out) as
// "linux/amd64, linux/arm64/v8 (manifest only), …".
func (l *ManifestList) Platforms() string {
	var parts []string
	for _, in := range l.Instances {
		if in.Attestation {
			continue
		}
		s := in.PlatformString()
		if in.State != Complete {
			s += " (" + in.State.String() + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// newManifestList describes list, read from blob d, each child's state looked up in the
// archive: walk reads the child manifests that are there.
func (l *ociLayout) newManifestList(r *Reader, d imgspecv1.Descriptor, mediaType string, data []byte, list *imgspecv1.Index, depth int) *ManifestList {
	ml := &ManifestList{Digest: d.Digest, MediaType: mediaType, Data: data}
	for _, child := range list.Manifests {
		in := Instance{Descriptor: child, State: Absent, Attestation: child.Annotations[AttestationAnnotation] != ""}
		if _, ok := r.ix.Lookup(layout.BlobName(child.Digest)); ok {
			m, ok := l.walk(r, imgspecv1.Descriptor{Digest: child.Digest, Size: child.Size, MediaType: child.MediaType}, depth+1)
			if ok {
				in.manifest, in.State = m, r.manifestState(m)
			}
		}
		ml.Instances = append(ml.Instances, in)
	}
	return ml
}

// manifestState says whether the archive holds m's config and layers; a foreign layer
// (one with URLs, which exporters leave out) is not needed.
func (r *Reader) manifestState(m ociManifest) InstanceState {
	if _, ok := r.ix.Lookup(layout.BlobName(m.parsed.ConfigInfo().Digest)); !ok {
		return ManifestOnly
	}
	for _, li := range m.parsed.LayerInfos() {
		if _, ok := r.ix.Lookup(layout.BlobName(li.Digest)); !ok && len(li.URLs) == 0 {
			return ManifestOnly
		}
	}
	return Complete
}

// choose picks the instance of l a copy of it into one manifest would take for sys's
// platform choice (the host's where sys chooses none), among the complete ones, with
// containers/image's own rules (variants, compatible architectures, order).
func (l *ManifestList) choose(sys *types.SystemContext) (Instance, error) {
	var candidates []imgspecv1.Descriptor
	for _, in := range l.Instances {
		if in.State == Complete && !in.Attestation {
			candidates = append(candidates, in.Descriptor)
		}
	}
	d, err := manifest.OCI1IndexFromComponents(candidates, nil).ChooseInstance(sys)
	if err != nil {
		return Instance{}, err
	}
	for _, in := range l.Instances {
		if in.Digest == d && in.State == Complete {
			return in, nil
		}
	}
	return Instance{}, fmt.Errorf("no instance %s", d) // ChooseInstance returns a candidate
}

// ManifestList returns the manifest list of the archive's OCI layout that holds the image's
// manifest (found by its config), or nil when there is none or index.json is unreadable.
func (img *Image) ManifestList() *ManifestList {
	if img.ID == "" {
		return nil
	}
	l, err := img.r.ociLayoutInfo()
	if err != nil || l == nil {
		return nil
	}
	return l.listByConfig[img.ID]
}

// ForPlatform returns the image for sys's platform choice: img itself when it is that
// platform, another manifest of its manifest list when the archive holds that one
// completely, and otherwise an error wrapping ErrPlatformNotFound that says what the archive
// holds. A sys that chooses no OS or architecture chooses nothing: img is returned.
func (img *Image) ForPlatform(sys *types.SystemContext) (*Image, error) {
	if sys == nil || (sys.OSChoice == "" && sys.ArchitectureChoice == "") {
		return img, nil
	}
	list := img.ManifestList()
	if list == nil {
		return img.forOwnPlatform(sys)
	}
	in, err := list.choose(sys)
	if err != nil {
		return nil, img.platformNotFound(list, sys)
	}
	return img.platformImage(in), nil
}

// platformNotFound is the error for a platform sys chooses that list does not hold
// completely, naming what it holds.
func (img *Image) platformNotFound(list *ManifestList, sys *types.SystemContext) error {
	return fmt.Errorf("archive %q: %s: %w: %s requested, the archive holds %s (manifest list %s)", img.r.name, img.Name(), ErrPlatformNotFound, wanted(sys), list.Platforms(), list.Digest)
}

// platformImage is instance in of img's manifest list as an image: img itself when in is
// its manifest.
func (img *Image) platformImage(in Instance) *Image {
	if in.Uses(img.ID) {
		return img
	}
	return img.r.instanceImage(img, in.manifest)
}

// forOwnPlatform checks an image that is one manifest against sys's platform choice.
func (img *Image) forOwnPlatform(sys *types.SystemContext) (*Image, error) {
	res, err := img.Resolve()
	if err != nil {
		return nil, err
	}
	own := imgspecv1.Platform{OS: res.OS, Architecture: res.Architecture, Variant: res.Variant}
	list := ManifestList{Instances: []Instance{{Descriptor: imgspecv1.Descriptor{Digest: img.ID, Platform: &own}}}}
	if _, err := list.choose(sys); err != nil {
		return nil, fmt.Errorf("archive %q: %s: %w: %s requested, the image is %s only", img.r.name, img.Name(), ErrPlatformNotFound, wanted(sys), platformString(own))
	}
	return img, nil
}

// wanted is the platform sys chooses, the host's filling in what it leaves out.
func wanted(sys *types.SystemContext) string {
	p := imgspecv1.Platform{OS: sys.OSChoice, Architecture: sys.ArchitectureChoice, Variant: sys.VariantChoice}
	if p.OS == "" {
		p.OS = runtime.GOOS
	}
	if p.Architecture == "" {
		p.Architecture = runtime.GOARCH
	}
	return platformString(p)
}

// instanceImage is the image that manifest m of img's manifest list describes, under img's
// position and tags: the platform a tag names when another one is asked for.
func (r *Reader) instanceImage(img *Image, m ociManifest) *Image {
	it := layout.ManifestItem{Config: layout.BlobName(m.parsed.ConfigInfo().Digest), RepoTags: img.RepoTags}
	for _, li := range m.parsed.LayerInfos() {
		it.Layers = append(it.Layers, layout.BlobName(li.Digest))
	}
	return r.imageFromItem(img.Index, it)
}

// representative is the manifest that stands for the list where one manifest is listed or
// served by default: the host's platform if the archive holds it completely, else the first
// complete platform, else the first manifest the archive holds (whose image then lists what
// it lacks). It reports false when the archive holds no manifest of the list.
func (l *ManifestList) representative() (ociManifest, bool) {
	if in, err := l.choose(nil); err == nil {
		return in.manifest, true
	}
	for _, st := range []InstanceState{Complete, ManifestOnly} {
		for _, in := range l.Instances {
			if in.State == st && !in.Attestation {
				return in.manifest, true
			}
		}
	}
	return ociManifest{}, false
}

// PlatformImage is one platform of a manifest list, as an image of its own.
type PlatformImage struct {
	Platform string
	Manifest digest.Digest
	Image    *Image
}

// OtherPlatforms returns the platforms of the image's manifest list that the archive holds
// completely, other than the image itself, attestations left out.
func (img *Image) OtherPlatforms() []PlatformImage {
	list := img.ManifestList()
	if list == nil {
		return nil
	}
	var out []PlatformImage
	for _, in := range list.Instances {
		if in.State != Complete || in.Attestation || in.Uses(img.ID) {
			continue
		}
		out = append(out, PlatformImage{Platform: in.PlatformString(), Manifest: in.Digest, Image: img.r.instanceImage(img, in.manifest)})
	}
	return out
}

// ListContent is what a copy of a whole manifest list reads: the list as stored, the
// manifests of it the archive holds, and their blobs.
type ListContent struct {
	r    *Reader
	list *ManifestList
	// images serves the blobs of the complete platform manifests, checked as an image's
	// blobs are (diffIDs, layers read as tars); other blobs (attestations) are checked
	// against their digest only.
	images []*Image
}

// ListContent returns the content of the image's manifest list; false when the image is one
// manifest.
func (img *Image) ListContent() (*ListContent, bool) {
	list := img.ManifestList()
	if list == nil {
		return nil, false
	}
	c := &ListContent{r: img.r, list: list}
	for _, in := range list.Instances {
		if in.State == Complete && !in.Attestation {
			c.images = append(c.images, img.platformImage(in))
		}
	}
	return c, true
}

// List is the manifest list.
func (c *ListContent) List() *ManifestList { return c.list }

// Manifest returns manifest d of the list as stored, with its media type.
func (c *ListContent) Manifest(d digest.Digest) ([]byte, string, error) {
	for _, in := range c.list.Instances {
		if in.Digest == d && in.State != Absent {
			return in.manifest.data, in.manifest.mediaType, nil
		}
	}
	return nil, "", fmt.Errorf("archive %q: %w: manifest list %s holds no manifest %s that the archive has", c.r.name, ErrImageNotFound, c.list.Digest, d)
}

// OpenBlob opens blob d of a complete manifest of the list, verified while it is read.
func (c *ListContent) OpenBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	for _, img := range c.images {
		if res, err := img.Resolve(); err == nil {
			if _, ok := res.blobs[d]; ok {
				return img.OpenBlob(d, false)
			}
		}
	}
	for _, in := range c.list.Instances {
		if in.State != Complete || !in.Attestation || !in.manifest.refersTo(d) {
			continue
		}
		m, err := c.r.ix.Resolve(layout.BlobName(d))
		if err != nil {
			return nil, 0, err
		}
		label := fmt.Sprintf("archive %q: member %q", c.r.name, m.Name)
		return newVerifier(io.NopCloser(c.r.ix.section(m)), d, m.Size, label, Uncompressed, "", false), m.Size, nil
	}
	return nil, 0, fmt.Errorf("archive %q: %w: no blob %s in the complete manifests of manifest list %s", c.r.name, ErrMemberNotFound, d, c.list.Digest)
}

// refersTo reports whether m names blob d as its config or a layer.
func (m ociManifest) refersTo(d digest.Digest) bool {
	if m.parsed.ConfigInfo().Digest == d {
		return true
	}
	for _, li := range m.parsed.LayerInfos() {
		if li.Digest == d {
			return true
		}
	}
	return false
}

// attestationSubject is the annotation that names the manifest an attestation describes.
const attestationSubject = "vnd.docker.reference.digest"

// PlatformManifests returns the manifests of the image's manifest list that a copy of the
// platforms syss choose takes: for each, the complete manifest containers/image's matching
// picks (see ForPlatform), and the complete attestations of those, in the list's order. An
// image that is one manifest gives nil when it is every platform asked for. A platform the
// archive does not hold completely is an error wrapping ErrPlatformNotFound.
func (img *Image) PlatformManifests(syss []*types.SystemContext) ([]digest.Digest, error) {
	list := img.ManifestList()
	if list == nil {
		for _, sys := range syss {
			if _, err := img.forOwnPlatform(sys); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	chosen := map[digest.Digest]bool{}
	for _, sys := range syss {
		in, err := list.choose(sys)
		if err != nil {
			return nil, img.platformNotFound(list, sys)
		}
		chosen[in.Digest] = true
	}
	var out []digest.Digest
	for _, in := range list.Instances {
		subject := digest.Digest(in.Annotations[attestationSubject])
		if chosen[in.Digest] || (in.Attestation && in.State == Complete && chosen[subject]) {
			out = append(out, in.Digest)
		}
	}
	return out, nil
}
