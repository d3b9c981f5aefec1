package copy

import (
	"errors"
	"fmt"
	"reflect"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// compressionUncompressed is the base variant name containers/image's blob-info cache uses
// for a blob known to be uncompressed.
const compressionUncompressed = "uncompressed"

// recordCompressor tells a containers/image blob-info cache how the blob d is compressed
// (base variant name "gzip", "zstd" or "uncompressed").
//
// A registry destination reuses a blob from another repository (a cross-repository mount)
// only when its cache knows both where the blob is and how it is compressed:
// CandidateLocations2 drops locations of unknown compression. RecordKnownLocation is public
// (types.BlobInfoCache), but recording the compression is not: copy.Image does it through
// the cache's RecordDigestCompressorData, whose argument type lives in an internal package.
// LoadStream uploads each layer once, to a staging repository, before it knows which
// repositories need it, and relies on mounts afterwards; so it calls that method through
// reflection, on the memory cache it owns. The method's shape is checked on every call (and
// once up front by LoadStream), so a containers/image that changes it gives an error, never
// a wrong record.
func recordCompressor(cache types.BlobInfoCache, d digest.Digest, base string) error {
	m := reflect.ValueOf(cache).MethodByName("RecordDigestCompressorData")
	if !m.IsValid() {
		return errors.New("the blob-info cache cannot record compression (no RecordDigestCompressorData)")
	}
	t := m.Type()
	if t.NumIn() != 2 || t.NumOut() != 0 || t.In(0) != reflect.TypeFor[digest.Digest]() || t.In(1).Kind() != reflect.Struct {
		return fmt.Errorf("the blob-info cache's RecordDigestCompressorData has an unexpected signature %s", t)
	}
	arg := reflect.New(t.In(1)).Elem()
	fields := map[string]string{"BaseVariantCompressor": base, "SpecificVariantCompressor": "unknown"}
	for name, v := range fields {
		f := arg.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.String || !f.CanSet() {
			return fmt.Errorf("the blob-info cache's compressor data has no settable field %s", name)
		}
		f.SetString(v)
	}
	m.Call([]reflect.Value{reflect.ValueOf(d), arg})
	return nil
}
