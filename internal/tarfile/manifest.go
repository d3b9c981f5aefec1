package tarfile

import (
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
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

// Repositories is the legacy "repositories" file: repository → tag → v1 image ID.
type Repositories map[string]map[string]string

// ParseManifest decodes manifest.json. A JSON null (written by some tools for an empty
// archive) decodes as no items.
func ParseManifest(data []byte) ([]ManifestItem, error) {
	var items []ManifestItem
	if err := strictUnmarshal(data, &items); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %w", ErrInvalidManifest, err)
	}
	return items, nil
}

// MarshalManifest encodes items as manifest.json. The output is deterministic: encoding/json
// sorts map keys and keeps slice order.
func MarshalManifest(items []ManifestItem) ([]byte, error) {
	if items == nil {
		items = []ManifestItem{}
	}
	return json.Marshal(items)
}

// ParseRepositories decodes the legacy repositories file.
func ParseRepositories(data []byte) (Repositories, error) {
	var r Repositories
	if err := strictUnmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: repositories: %w", ErrInvalidManifest, err)
	}
	return r, nil
}

// ParseOCIIndex decodes an OCI index (index.json or an index blob).
func ParseOCIIndex(data []byte) (*imgspecv1.Index, error) {
	var idx imgspecv1.Index
	if err := strictUnmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%w: index: %w", ErrInvalidManifest, err)
	}
	return &idx, nil
}

// imageConfig holds the parts of an image config that the reader needs.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
	RootFS       *struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// parseConfig decodes the fields of an image config the reader needs.
func parseConfig(data []byte) (*imageConfig, error) {
	var c imageConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if c.RootFS == nil {
		return nil, fmt.Errorf("no rootfs")
	}
	for _, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("rootfs.diff_ids: %w", err)
		}
	}
	return &c, nil
}

// strictUnmarshal decodes one JSON value and refuses trailing data, which json.Unmarshal
// does itself (a json.Decoder would copy the input into a buffer of its own first).
func strictUnmarshal(data []byte, v any) error {
	return json.Unmarshal(data, v)
}

// countJSONStrings counts the strings (keys included) in JSON text, in one pass and without
// decoding: a bound on what decoding it allocates, checked before decoding it.
func countJSONStrings(data []byte) int {
	n := 0
	in := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			if !in {
				n++
			}
			in = !in
		}
	}
	return n
}
