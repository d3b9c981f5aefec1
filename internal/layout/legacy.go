package layout

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// V1JSONName is the member holding v1 image id's JSON.
func V1JSONName(id string) string { return id + "/json" }

// V1LayerName is the member holding v1 image id's layer.
func V1LayerName(id string) string { return id + "/layer.tar" }

// v1VersionName is the member holding v1 image id's directory format version.
func v1VersionName(id string) string { return id + "/VERSION" }

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

// LegacyDirs composes the pre-1.10 directories of an image in the docker layout, base layer
// first (per layer: layer.tar as a symlink to the root-level layer, VERSION, json), and
// returns the top layer's v1 id. The v1 ids are our own: each is a digest over the parent's id
// and the layer's chain ID, and for the top layer also the config digest, so a layer stack
// shared by two images shares its directories up to (not including) each image's top.
func LegacyDirs(config []byte, configDigest digest.Digest, diffIDs []digest.Digest) ([]File, string, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, "", fmt.Errorf("%w: image config: %w", ErrInvalidManifest, err)
	}
	var out []File
	var chain digest.Digest
	parent := ""
	for i, d := range diffIDs {
		if i == 0 {
			chain = d
		} else {
			chain = digest.FromString(chain.String() + " " + d.String())
		}
		top := i == len(diffIDs)-1
		id := v1ID(parent, chain, configDigest, top)
		js, err := v1JSON(cfg, id, parent, top)
		if err != nil {
			return nil, "", err
		}
		out = append(out,
			File{Name: V1LayerName(id), Link: "../" + LayerName(d)},
			File{Name: v1VersionName(id), Data: []byte("1.0")},
			File{Name: V1JSONName(id), Data: js},
		)
		parent = id
	}
	return out, parent, nil
}

// v1ID is the v1 id of the layer with chain ID chain on top of parent; the top layer's also
// covers the config.
func v1ID(parent string, chain, configDigest digest.Digest, top bool) string {
	seed := "darc-v1 " + parent + " " + chain.String()
	if top {
		seed += " " + configDigest.String()
	}
	return digest.FromString(seed).Encoded()
}

// v1JSON composes the v1 JSON of layer id: created at the epoch, the config's os, and for the
// top layer the config's fields that v1 JSON has. Keys are sorted.
func v1JSON(cfg map[string]json.RawMessage, id, parent string, top bool) ([]byte, error) {
	epoch, _ := json.Marshal(time.Unix(0, 0).UTC())
	v1 := map[string]json.RawMessage{"created": epoch}
	if v, ok := cfg["os"]; ok {
		v1["os"] = v
	}
	if top {
		for _, k := range []string{"architecture", "config", "container", "container_config", "created", "docker_version", "os"} {
			if v, ok := cfg[k]; ok {
				v1[k] = v
			}
		}
	}
	idJSON, _ := json.Marshal(id)
	v1["id"] = idJSON
	if parent != "" {
		pJSON, _ := json.Marshal(parent)
		v1["parent"] = pJSON
	}
	return json.Marshal(v1)
}
