package layout

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// V1JSONName is the member holding v1 image id's JSON.
func V1JSONName(id string) string { return id + "/json" }

// V1LayerName is the member holding v1 image id's layer.
func V1LayerName(id string) string { return id + "/layer.tar" }

// V1VersionName is the member holding v1 image id's directory format version.
func V1VersionName(id string) string { return id + "/VERSION" }

// V1IDOfJSONName returns the v1 id of a root-level "<id>/json" member name.
func V1IDOfJSONName(name string) (string, bool) {
	id, ok := strings.CutSuffix(name, "/json")
	if !ok || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// IsV1DirMember reports whether name is a file of a v1 image directory (VERSION, json,
// layer.tar): metadata that only pre-1.10 Docker reads.
func IsV1DirMember(name string) bool {
	dir, base := path.Split(name)
	return dir != "" && (base == "VERSION" || base == "json" || base == "layer.tar")
}

// V1Image holds the fields of a pre-1.10 "<id>/json" that reading needs.
type V1Image struct {
	ID              string `json:"id"`
	Parent          string `json:"parent,omitempty"`
	Created         string `json:"created,omitempty"`
	Author          string `json:"author,omitempty"`
	Comment         string `json:"comment,omitempty"`
	ContainerConfig struct {
		Cmd []string `json:"Cmd"`
	} `json:"container_config"`
}

// ParseV1Image decodes a "<id>/json". The id it holds is not checked: the directory names the
// image.
func ParseV1Image(data []byte) (V1Image, error) {
	var v V1Image
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	return v, nil
}

// LegacyConfig builds an image config from the top v1 JSON of a chain (base first) whose
// layers have diffIDs, the way Docker converts v1 images: the v1 bookkeeping fields go,
// rootfs and a history entry per layer come in. Keys are emitted sorted, so the result (and
// the image ID) is stable.
func LegacyConfig(top []byte, chain []V1Image, diffIDs []digest.Digest) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(top, &fields); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	for _, k := range []string{"id", "parent", "Size", "parent_id", "layer_id", "throwaway", "checksum"} {
		delete(fields, k)
	}
	type history struct {
		Created   string `json:"created,omitempty"`
		CreatedBy string `json:"created_by,omitempty"`
		Author    string `json:"author,omitempty"`
		Comment   string `json:"comment,omitempty"`
	}
	hist := make([]history, len(chain))
	for i, v := range chain {
		hist[i] = history{Created: v.Created, CreatedBy: strings.Join(v.ContainerConfig.Cmd, " "), Author: v.Author, Comment: v.Comment}
	}
	rootfs := struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	}{"layers", diffIDs}
	var err error
	if fields["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	if fields["history"], err = json.Marshal(hist); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}
