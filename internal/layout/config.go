package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Config holds an image config: the fields reading and writing an archive use, and, for their
// types only, every other field docker's image.Image decodes.
//
// docker load parses each config with encoding/json into image.Image (moby image/image.go:
// V1Image, with container.Config from api/types/container) and refuses the archive when that
// fails or when there is no rootfs. Config mirrors those Go types, so that decoding fails
// exactly where docker's does: a "created" that is not an RFC 3339 time (time.Time), a number
// that does not fit its field (int64, int), a string where docker has a bool, a list, an object.
// Field names and tags are docker's (encoding/json matches names case-insensitively, as it
// does for docker). Fields docker does not type (history and OCI additions docker ignores)
// are not checked.
type Config struct {
	Architecture string  `json:"architecture"`
	OS           string  `json:"os"`
	Variant      string  `json:"variant,omitempty"`
	RootFS       *RootFS `json:"rootfs"`

	// Typed as docker types them; read by nothing in darc.
	ID              string           `json:"id,omitempty"`
	Parent          string           `json:"parent,omitempty"`
	Comment         string           `json:"comment,omitempty"`
	Created         time.Time        `json:"created"`
	Container       string           `json:"container,omitempty"`
	ContainerConfig containerConfig  `json:"container_config,omitempty"`
	DockerVersion   string           `json:"docker_version,omitempty"`
	Author          string           `json:"author,omitempty"`
	RunConfig       *containerConfig `json:"config,omitempty"`
	Size            int64            `json:",omitempty"`
	History         []history        `json:"history,omitempty"`
	OSVersion       string           `json:"os.version,omitempty"`
	OSFeatures      []string         `json:"os.features,omitempty"`
}

// RootFS is the config's list of layers.
type RootFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diff_ids"`
}

// history mirrors docker's image.History.
type history struct {
	Created    time.Time `json:"created"`
	Author     string    `json:"author,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// containerConfig mirrors docker's container.Config ("config" and "container_config"). Its
// fields carry no JSON tags, as docker's do not.
type containerConfig struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    map[string]struct{} `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             strSlice
	Healthcheck     *healthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      strSlice
	NetworkDisabled bool   `json:",omitempty"`
	MacAddress      string `json:",omitempty"`
	OnBuild         []string
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           strSlice `json:",omitempty"`
}

// healthConfig mirrors docker's container.HealthConfig; its durations are int64 nanoseconds.
type healthConfig struct {
	Test        []string      `json:",omitempty"`
	Interval    time.Duration `json:",omitempty"`
	Timeout     time.Duration `json:",omitempty"`
	StartPeriod time.Duration `json:",omitempty"`
	Retries     int           `json:",omitempty"`
}

// strSlice mirrors docker's strslice.StrSlice: a list of strings, or one string.
type strSlice []string

func (s *strSlice) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*s = list
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*s = strSlice{one}
	return nil
}

// ParseConfig decodes an image config as docker load does (see Config) and checks that it has
// a rootfs whose diffIDs are valid digests. Its errors are the decoder's; the caller says which
// sentinel they mean.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if c.RootFS == nil {
		return nil, errors.New("no rootfs")
	}
	if err := validDiffIDs(c.RootFS.DiffIDs); err != nil {
		return nil, err
	}
	return &c, nil
}

func validDiffIDs(ds []digest.Digest) error {
	for _, d := range ds {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("rootfs.diff_ids: %w", err)
		}
	}
	return nil
}

// ConfigDiffIDs returns the rootfs.diff_ids of an image config, checking that it has a rootfs
// and that each diffID is a valid digest. Unlike ParseConfig it does not judge the other
// fields: it is for writing an archive, where the config comes from elsewhere (a registry)
// and is stored as it is.
func ConfigDiffIDs(data []byte) ([]digest.Digest, error) {
	var c struct {
		RootFS *RootFS `json:"rootfs"`
	}
	err := json.Unmarshal(data, &c)
	if err == nil && c.RootFS == nil {
		err = errors.New("no rootfs")
	}
	if err == nil {
		err = validDiffIDs(c.RootFS.DiffIDs)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: image config: %w", ErrInvalidManifest, err)
	}
	return c.RootFS.DiffIDs, nil
}
