// Package layout is the format of the metadata a docker-archive carries, one file per layout,
// each with its parse and compose side:
//
//   - docker.go: manifest.json and repositories, and the member names of the docker layout
//     (<hex>.tar layers, <hex>.json configs, and the names other writers use);
//   - oci.go: the OCI image layout inside Docker 25+ and BuildKit archives: index.json,
//     oci-layout and blobs/sha256/<hex>;
//   - legacy.go: pre-1.10 archives: <v1id>/json with its parent chain, the image config
//     converted from it, and the v1 ids and directories written for old Docker;
//   - config.go: the parts of an image config that every layout needs;
//   - compose.go: all the metadata files of an archive being written, from its images.
//
// It works on bytes and names only: reading members out of a tar, and writing them, is
// internal/tarfile's job, and which images and tags an archive holds is the caller's.
// Parsers refuse trailing data (except manifest.json's, which docker load ignores) and wrap
// ErrInvalidManifest; the bounds they check (see
// ParseManifest) wrap ErrTooLarge. Composition is deterministic: the output depends only on
// the values given, in the order given.
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Errors the parsers wrap. internal/tarfile and the public archive package re-export them,
// so their text carries archive's prefix.
var (
	// ErrTooLarge means a bound on metadata was exceeded.
	ErrTooLarge = errors.New("archive: limit exceeded")
	// ErrInvalidManifest means manifest.json, repositories, index.json, a v1 JSON or an image
	// config is malformed or inconsistent.
	ErrInvalidManifest = errors.New("archive: invalid manifest")
)

// Default bounds on metadata that readers (and writers, for configs) accept.
const (
	// DefaultMaxManifestSize bounds manifest.json, repositories, index.json and OCI manifests.
	DefaultMaxManifestSize = 64 << 20
	// DefaultMaxConfigSize bounds one image config (or legacy v1 JSON).
	DefaultMaxConfigSize = 8 << 20
)

// Each image, tag, layer and layer source that manifest.json lists costs a few hundred bytes
// of memory once resolved, and decoding costs memory per string: far more than the JSON text
// when names are short. So manifest.json, repositories and index.json may hold at most one
// string per bytesPerString, and manifest.json list at most one image, tag, layer or layer
// source per bytesPerRef, of the manifest size limit: 8 Mi strings and 2 Mi of those at the
// 64 MiB default. Real archives name members by digest (70 bytes or more per layer), so they
// stay far below; a hand-made manifest.json of one-letter names can no longer cost 60 times
// its size.
const (
	bytesPerString = 8
	bytesPerRef    = 32
)

// File is a member that composition produces: Data, or a symlink to Link when Link is set.
type File struct {
	Name string
	Data []byte
	Link string
}

// checkStrings refuses JSON text (the member name) that holds more strings than maxSize, the
// limit it was read within, allows; 0 means no bound. It counts without decoding, so it is
// checked before decoding.
func checkStrings(name string, data []byte, maxSize int64) error {
	if maxSize <= 0 {
		return nil
	}
	if n, max := countJSONStrings(data), maxSize/bytesPerString; int64(n) > max {
		return fmt.Errorf("%w: %s holds %d strings, more than %d (one per %d bytes of the manifest size limit)", ErrTooLarge, name, n, max, bytesPerString)
	}
	return nil
}

// countJSONStrings counts the strings (keys included) in JSON text, in one pass and without
// decoding: a bound on what decoding it allocates.
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

// strictUnmarshal decodes one JSON value and refuses trailing data, which json.Unmarshal
// does itself (a json.Decoder would copy the input into a buffer of its own first, and its
// More does not see a stray "]" or "}" after the value).
func strictUnmarshal(data []byte, v any) error {
	return json.Unmarshal(data, v)
}
