package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The metadata files of the docker layout, at the archive root.
const (
	ManifestFile     = "manifest.json"
	RepositoriesFile = "repositories"
)

// ManifestItem is one entry of manifest.json.
type ManifestItem struct {
	Config string
	// RepoTags is nil for Docker's "null" (an image saved by ID) and empty for "[]".
	RepoTags []string
	Layers   []string
	// Parent is the v1 ID of the parent image, written by old Docker versions.
	Parent string `json:",omitempty"`
	// LayerSources describes layers by digest; Docker 25+ writes it for every layer.
	LayerSources map[digest.Digest]imgspecv1.Descriptor `json:",omitempty"`
}

// ParseManifest decodes manifest.json. A JSON null (written by some tools for an empty
// archive) decodes as no items.
//
// Like docker load, which decodes manifest.json with a json.Decoder, it reads the first JSON
// value and ignores whatever follows it; end is where that value ends, so that a caller can
// tell (see HasTrailer) and warn: containers/image refuses such a manifest.json.
//
// maxSize is the manifest size limit data was read within (0: no bound). It bounds the
// strings the text may hold (one per 8 bytes of it), checked before decoding, and the images,
// tags, layers and layer sources the items may list together (one per 32 bytes of it).
func ParseManifest(data []byte, maxSize int64) (items []ManifestItem, end int, err error) {
	if err := checkStrings(ManifestFile, data, maxSize); err != nil {
		return nil, 0, err
	}
	if items, end, err = decodeFirst[[]ManifestItem](data); err != nil {
		return nil, 0, fmt.Errorf("%w: manifest.json: %w", ErrInvalidManifest, err)
	}
	if maxSize <= 0 {
		return items, end, nil
	}
	refs := 0
	for _, it := range items {
		refs += 1 + len(it.RepoTags) + len(it.Layers) + len(it.LayerSources)
	}
	if max := maxSize / bytesPerRef; int64(refs) > max {
		return nil, 0, fmt.Errorf("%w: manifest.json lists %d images, tags, layers and layer sources, more than %d (one per %d bytes of the manifest size limit)", ErrTooLarge, refs, max, bytesPerRef)
	}
	return items, end, nil
}

// decodeFirst decodes the first JSON value in data, as a json.Decoder does, and returns
// where it ends. The usual case, data that is one value, is decoded in place; only data
// with something after the value goes through a Decoder, which copies it.
func decodeFirst[T any](data []byte) (v T, end int, err error) {
	var syn *json.SyntaxError
	if err = json.Unmarshal(data, &v); !errors.As(err, &syn) {
		return v, len(data), err
	}
	var zero T
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&zero); err != nil {
		return zero, 0, err
	}
	return zero, int(dec.InputOffset()), nil
}

// HasTrailer reports whether data holds more than white space from end on: for a JSON value
// that ends at end.
func HasTrailer(data []byte, end int) bool {
	return len(bytes.TrimLeft(data[end:], " \t\r\n")) > 0
}

// marshalManifest encodes items as manifest.json. The output is deterministic: encoding/json
// sorts map keys and keeps slice order.
func marshalManifest(items []ManifestItem) ([]byte, error) {
	if items == nil {
		items = []ManifestItem{}
	}
	return json.Marshal(items)
}

// Repositories is the legacy "repositories" file: repository → tag → v1 image ID (or, as
// containers/image writes it, the hex of the top layer's diffID).
type Repositories map[string]map[string]string

// ParseRepositories decodes the repositories file; maxSize bounds its strings as for
// ParseManifest.
func ParseRepositories(data []byte, maxSize int64) (Repositories, error) {
	if err := checkStrings(RepositoriesFile, data, maxSize); err != nil {
		return nil, err
	}
	var r Repositories
	if err := strictUnmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: repositories: %w", ErrInvalidManifest, err)
	}
	return r, nil
}

// marshalRepositories encodes r; encoding/json sorts the keys.
func marshalRepositories(r Repositories) ([]byte, error) {
	return json.Marshal(r)
}

// Add maps tag to id.
func (r Repositories) Add(tag distref.NamedTagged, id string) {
	if r[tag.Name()] == nil {
		r[tag.Name()] = map[string]string{}
	}
	r[tag.Name()][tag.Tag()] = id
}

// RepoTag is one tag of a repositories file and the v1 id it names.
type RepoTag struct {
	Tag string // "repository:tag"
	ID  string
}

// Tags lists the tags in sorted order: the file is a JSON object, which has no order of its
// own.
func (r Repositories) Tags() []RepoTag {
	var tags []RepoTag
	for repo, m := range r {
		for tag, id := range m {
			tags = append(tags, RepoTag{repo + ":" + tag, id})
		}
	}
	slices.SortFunc(tags, func(a, b RepoTag) int { return strings.Compare(a.Tag, b.Tag) })
	return tags
}

// LayerName is the member that holds an uncompressed layer in the docker layout, as
// containers/image names it: "<diffid-hex>.tar".
func LayerName(diffID digest.Digest) string { return diffID.Encoded() + ".tar" }

// ConfigName is the member that holds an image config in the docker layout:
// "<config-hex>.json".
func ConfigName(d digest.Digest) string { return d.Encoded() + ".json" }

// DigestFromName returns the sha256 digest a member name states: "<hex>.json",
// "sha256:<hex>" (go-containerregistry's configs), "blobs/sha256/<hex>", and, when
// compressedLayer is set, crane's "<hex>.tar.gz" / "<hex>.tar.zst". A "<hex>.tar" layer name
// states a diffID, not the digest of what is stored, so it is not taken here.
func DigestFromName(name string, compressedLayer bool) (digest.Digest, bool) {
	base := path.Base(name)
	var hex string
	switch {
	case path.Dir(name) == "blobs/sha256":
		hex = base
	case strings.HasPrefix(base, "sha256:"):
		hex = strings.TrimPrefix(base, "sha256:")
	case !compressedLayer && strings.HasSuffix(base, ".json"):
		hex = strings.TrimSuffix(base, ".json")
	case compressedLayer && strings.HasSuffix(base, ".tar.gz"):
		hex = strings.TrimSuffix(base, ".tar.gz")
	case compressedLayer && strings.HasSuffix(base, ".tar.zst"):
		hex = strings.TrimSuffix(base, ".tar.zst")
	default:
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}
