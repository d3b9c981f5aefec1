package layout

import (
	"encoding/json"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
)

// Config holds the parts of an image config that reading and writing an archive need.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
	RootFS       *struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// ParseConfig decodes the fields of an image config in Config and checks that it has a
// rootfs whose diffIDs are valid digests. Its errors are the decoder's; the caller says which
// sentinel they mean.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if c.RootFS == nil {
		return nil, errors.New("no rootfs")
	}
	for _, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("rootfs.diff_ids: %w", err)
		}
	}
	return &c, nil
}

// ConfigDiffIDs returns the rootfs.diff_ids of an image config, checking that the config
// parses and that each diffID is a valid digest.
func ConfigDiffIDs(data []byte) ([]digest.Digest, error) {
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w: image config: %w", ErrInvalidManifest, err)
	}
	return c.RootFS.DiffIDs, nil
}
