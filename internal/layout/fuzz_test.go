package layout

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"reflect"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/archivetest"
)

// Run FuzzManifest for longer with, for example:
//
//	go test -tags containers_image_openpgp -run '^$' -fuzz '^FuzzManifest$' -fuzztime 5m ./internal/layout/

// seedArchives returns the uncompressed archives whose metadata seeds FuzzManifest: every
// uncompressed fixture (as written by real tools), every archivetest layout of two small
// images and the archivetest edge cases.
func seedArchives(tb testing.TB) [][]byte {
	tb.Helper()
	out, err := archivetest.SeedArchives("../../testdata/archives", false)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// metadataSeeds returns the manifest.json, repositories and index.json members of the seed
// archives, read with archive/tar up to the first error.
func metadataSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, data := range seedArchives(tb) {
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			switch strings.TrimPrefix(path.Clean("/"+h.Name), "/") {
			case ManifestFile, RepositoriesFile, IndexFile:
			default:
				continue
			}
			if h.Typeflag != tar.TypeReg || h.Size > 1<<20 {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return append(out, []byte("null"), []byte("[]"), []byte("{}"), []byte(`[{"Config":"a.json","RepoTags":null,"Layers":["../x"]}]`))
}

// FuzzManifest checks the parsers of manifest.json, repositories and index.json: whatever
// they accept is valid JSON (for manifest.json, up to where its first value ends) and survives parse → marshal → parse unchanged (and marshalling
// again gives the same bytes); whatever they refuse is ErrInvalidManifest. The bounds are off
// (maxSize 0): they are checked by TestParseBounds.
func FuzzManifest(f *testing.F) {
	for _, s := range metadataSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if items, end, err := ParseManifest(data, 0); err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("ParseManifest error %v does not wrap ErrInvalidManifest", err)
			}
		} else {
			// Like docker load, the manifest parser reads the first value and ignores the rest.
			mustBeJSON(t, "manifest.json", data[:end])
			roundTrip(t, "manifest.json", items, marshalManifest, func(b []byte) ([]ManifestItem, error) {
				items, end, err := ParseManifest(b, 0)
				if err == nil && HasTrailer(b, end) {
					err = fmt.Errorf("marshalled form %q has a trailer", b)
				}
				return items, err
			})
		}
		if repos, err := ParseRepositories(data, 0); err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("ParseRepositories error %v does not wrap ErrInvalidManifest", err)
			}
		} else {
			mustBeJSON(t, "repositories", data)
			roundTrip(t, "repositories", repos, marshalRepositories, parseUnbounded(ParseRepositories))
		}
		if idx, err := ParseIndex(data, 0); err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("ParseIndex error %v does not wrap ErrInvalidManifest", err)
			}
		} else {
			mustBeJSON(t, "index.json", data)
			roundTrip(t, "index.json", *idx, func(i imgspecv1.Index) ([]byte, error) { return json.Marshal(i) },
				func(b []byte) (imgspecv1.Index, error) {
					p, err := ParseIndex(b, 0)
					if err != nil {
						return imgspecv1.Index{}, err
					}
					return *p, nil
				})
		}
	})
}

// parseUnbounded is parse with the bounds off.
func parseUnbounded[T any](parse func([]byte, int64) (T, error)) func([]byte) (T, error) {
	return func(b []byte) (T, error) { return parse(b, 0) }
}

// mustBeJSON fails unless data, which a parser accepted, is exactly one valid JSON value.
func mustBeJSON(t *testing.T, what string, data []byte) {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("%s parser accepted %q, which is not one valid JSON value", what, data)
	}
}

// roundTrip checks parse → marshal → parse → marshal: the second parse equals the first
// once both are marshalled (encoding/json drops empty maps and byte slices under omitempty,
// so "{}" and an absent field are the same value), and the marshalled bytes are stable.
func roundTrip[T any](t *testing.T, what string, v T, marshal func(T) ([]byte, error), parse func([]byte) (T, error)) {
	t.Helper()
	b1, err := marshal(v)
	if err != nil {
		t.Fatalf("%s: cannot marshal what was parsed: %v", what, err)
	}
	v2, err := parse(b1)
	if err != nil {
		t.Fatalf("%s: marshalled form %q does not parse: %v", what, b1, err)
	}
	b2, err := marshal(v2)
	if err != nil {
		t.Fatalf("%s: cannot marshal the re-parsed value: %v", what, err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("%s: not stable:\n first %q\nsecond %q", what, b1, b2)
	}
	v3, err := parse(b2)
	if err != nil || !reflect.DeepEqual(v2, v3) {
		t.Fatalf("%s: re-parse differs: %+v, then %+v (%v)", what, v2, v3, err)
	}
}
