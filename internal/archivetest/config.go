package archivetest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
)

// createdTime is the creation time of generated configs and of the files in generated layers.
func createdTime() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }

// Layer returns a valid uncompressed tar containing n regular files ("file-0000" …) of size
// bytes each, with pseudo-random content from seed. Headers have mode 0644, uid/gid 0 and a
// fixed mtime. Layer(seed, 0, 0) is the 1024-byte empty layer (two zero blocks), whose
// diffID is the well-known sha256:5f70bf18….
func Layer(seed int64, n, size int) []byte {
	var buf bytes.Buffer
	buf.Grow(1024 + n*(512+(size+511)/512*512))
	tw := tar.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	body := make([]byte, size+8)
	for i := 0; i < n; i++ {
		for j := 0; j < size; j += 8 {
			binary.LittleEndian.PutUint64(body[j:], rng.Uint64())
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     fmt.Sprintf("file-%04d", i),
			Mode:     0o644,
			Size:     int64(size),
			ModTime:  createdTime(),
			Format:   tar.FormatUSTAR,
		}
		// Writing to a bytes.Buffer cannot fail, and the header is valid.
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		if _, err := tw.Write(body[:size]); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// GenerateConfig returns the config Build uses for an Image without one: a Docker image config
// (also a valid OCI config) in the shape BuildKit writes, with architecture amd64, os linux, a
// fixed creation time, one history entry per layer and rootfs.diff_ids = diffIDs.
func GenerateConfig(diffIDs []digest.Digest) []byte {
	type history struct {
		Created    string `json:"created"`
		CreatedBy  string `json:"created_by"`
		Comment    string `json:"comment"`
		EmptyLayer bool   `json:"empty_layer,omitempty"`
	}
	type rootFS struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	}
	type cfgSection struct {
		Env        []string `json:"Env"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	}
	type config struct {
		Architecture string     `json:"architecture"`
		Config       cfgSection `json:"config"`
		Created      string     `json:"created"`
		History      []history  `json:"history"`
		OS           string     `json:"os"`
		RootFS       rootFS     `json:"rootfs"`
	}
	ts := createdTime().Format(time.RFC3339)
	c := config{
		Architecture: "amd64",
		Config: cfgSection{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"/bin/sh"},
			WorkingDir: "/",
		},
		Created: ts,
		History: []history{},
		OS:      "linux",
		RootFS:  rootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	for i, d := range diffIDs {
		c.History = append(c.History, history{
			Created:   ts,
			CreatedBy: fmt.Sprintf("ADD layer-%d.tar / # buildkit", i),
			Comment:   "buildkit.dockerfile.v0",
		})
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, d)
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // cannot happen: plain strings and slices
	}
	return b
}

// parsedConfig holds the config fields that the layouts copy into their legacy metadata.
type parsedConfig struct {
	Architecture    string          `json:"architecture"`
	Author          string          `json:"author"`
	Comment         string          `json:"comment"`
	Container       string          `json:"container"`
	ContainerConfig json.RawMessage `json:"container_config"`
	Created         *time.Time      `json:"created"`
	DockerVersion   string          `json:"docker_version"`
	Config          json.RawMessage `json:"config"`
	Variant         string          `json:"variant"`
	OS              string          `json:"os"`
	History         []historyEntry  `json:"history"`
	RootFS          struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

type historyEntry struct {
	Author     string    `json:"author"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	Comment    string    `json:"comment"`
	EmptyLayer bool      `json:"empty_layer"`
}

func nonEmptyHistory(h []historyEntry) []historyEntry {
	var out []historyEntry
	for _, e := range h {
		if !e.EmptyLayer {
			out = append(out, e)
		}
	}
	return out
}
