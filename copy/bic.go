package copy

import (
	"errors"
	"fmt"
	"reflect"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
	"go.podman.io/image/v5/types"
)

// This file is darc's only reach into containers/image's internals. It exists for LoadStream
// into a registry, and nothing else may use it.
//
// What it reaches: the method
//
//	RecordDigestCompressorData(anyDigest digest.Digest, data blobinfocache.DigestCompressorData)
//
// of the concrete blob-info cache types (pkg/blobinfocache/memory, sqlite, boltdb), where
// blobinfocache is go.podman.io/image/v5/internal/blobinfocache; the method belongs to that
// package's BlobInfoCache2 interface. It is called by reflection because its argument type is
// internal: no code outside containers/image can name it, so neither a type assertion nor a
// cache type of our own can implement or call it.
//
// Why: LoadStream uploads each layer once, to a staging repository, before it knows which
// repositories need it, and then asks each image's docker destination to reuse it
// (TryReusingBlob), which mounts it across repositories. The docker destination finds the
// staging location through the cache's CandidateLocations2, and that drops every location of
// a blob whose compression the cache does not know (prioritize.CandidateTemplateWithCompression
// in pkg/blobinfocache/internal). A cache that implements only the public
// types.BlobInfoCache is wrapped by blobinfocache.FromBlobInfoCache in one whose
// CandidateLocations2 returns nothing at all. The public interface can record a location
// (RecordKnownLocation) and an uncompressed digest (RecordDigestUncompressedPair), but neither
// sets the compression; within containers/image only copy.Image's blob pipeline records it,
// and only for a blob it uploaded itself. Without this record, no layer is mounted and
// LoadStream fails with "cannot be reused".
//
// What would replace it: a public way to record a blob's compression in a cache, for example
// a function in go.podman.io/image/v5/pkg/blobinfocache,
//
//	RecordDigestCompression(cache types.BlobInfoCache, blobDigest digest.Digest, algorithm *compressiontypes.Algorithm)
//
// (nil meaning uncompressed), or the BlobInfoCache2 interface and DigestCompressorData moved
// out of internal/. Then compressorRecordable and recordCompressor become that one call.
//
// How it fails: the method and the two fields it sets are looked up by name and checked for
// their shape; LoadStream checks that once, on the cache it uses, before it reads anything
// (ErrStreamUnsupported), so a containers/image that renamed or reshaped them stops the load
// up front instead of uploading layers no image can mount. The two string values
// (blobinfocache.Uncompressed and UnknownCompression) are copied, since the constants are
// internal too; a change of them cannot be detected here, and TestLoadStreamMountsFromStaging
// (the registry's own log must show every layer mounted from the staging repository) is what
// catches it.

// Values of internal/blobinfocache.DigestCompressorData's fields, copied from the constants
// blobinfocache.Uncompressed and blobinfocache.UnknownCompression.
const (
	bicUncompressed       = "uncompressed"
	bicUnknownCompression = "unknown"
)

// compressorMethod returns cache's RecordDigestCompressorData and the type of its data
// argument, after checking their shape: (digest.Digest, struct) with no results, and string
// fields BaseVariantCompressor and SpecificVariantCompressor.
func compressorMethod(cache types.BlobInfoCache) (reflect.Value, reflect.Type, error) {
	if cache == nil {
		return reflect.Value{}, nil, errors.New("no blob-info cache")
	}
	m := reflect.ValueOf(cache).MethodByName("RecordDigestCompressorData")
	if !m.IsValid() {
		return reflect.Value{}, nil, fmt.Errorf("the blob-info cache %T has no method RecordDigestCompressorData", cache)
	}
	t := m.Type()
	if t.NumIn() != 2 || t.NumOut() != 0 || t.In(0) != reflect.TypeFor[digest.Digest]() || t.In(1).Kind() != reflect.Struct {
		return reflect.Value{}, nil, fmt.Errorf("the blob-info cache %T has RecordDigestCompressorData of an unexpected type %s", cache, t)
	}
	data := t.In(1)
	for _, name := range []string{"BaseVariantCompressor", "SpecificVariantCompressor"} {
		f, ok := data.FieldByName(name)
		if !ok || !f.IsExported() || f.Type.Kind() != reflect.String || len(f.Index) != 1 {
			return reflect.Value{}, nil, fmt.Errorf("the blob-info cache's compressor data %s has no string field %s", data, name)
		}
	}
	return m, data, nil
}

// compressorRecordable reports, as an error, why recordCompressor cannot work on cache.
func compressorRecordable(cache types.BlobInfoCache) error {
	_, _, err := compressorMethod(cache)
	return err
}

// recordCompressor records in cache that the blob d is compressed with alg (nil: not
// compressed), so that a docker destination using cache mounts d from the locations the
// cache knows for it. It records the base variant only (zstd for zstd:chunked), which claims
// no more than is known. An error means nothing was recorded: cache lacks the internal
// method (see compressorRecordable), or alg is not an algorithm containers/image can look up
// by name, whose record its candidate lookup would ignore.
func recordCompressor(cache types.BlobInfoCache, d digest.Digest, alg *compressiontypes.Algorithm) error {
	m, dataType, err := compressorMethod(cache)
	if err != nil {
		return err
	}
	base := bicUncompressed
	if alg != nil {
		base = alg.BaseVariantName()
		if _, err := compression.AlgorithmByName(base); err != nil {
			return fmt.Errorf("blob %s: compression %q cannot be recorded: %w", d, alg.Name(), err)
		}
	}
	data := reflect.New(dataType).Elem()
	data.FieldByName("BaseVariantCompressor").SetString(base)
	data.FieldByName("SpecificVariantCompressor").SetString(bicUnknownCompression)
	m.Call([]reflect.Value{reflect.ValueOf(d), data})
	return nil
}
