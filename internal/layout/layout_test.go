package layout

import (
	"errors"
	"strings"
	"testing"
)

func TestCountJSONStrings(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{``, 0},
		{`[]`, 0},
		{`["a","b"]`, 2},
		{`{"k":"v","n":1}`, 3},
		{`["a\"b","c\\"]`, 2},
		{`["\\\""]`, 1},
		{`[{"Config":"c","Layers":["l","l"]}]`, 5},
	}
	for _, tc := range tests {
		if got := countJSONStrings([]byte(tc.in)); got != tc.want {
			t.Errorf("countJSONStrings(%s) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestParseBounds: the parsers refuse, with ErrTooLarge, more strings than one per 8 bytes of
// the size limit and (manifest.json) more images, tags, layers and layer sources than one
// per 32 bytes; at the bound, and with no limit, they accept.
func TestParseBounds(t *testing.T) {
	// 1 image, 1 tag, 2 layers: 4 references; 7 strings.
	manifest := []byte(`[{"Config":"c","RepoTags":["t"],"Layers":["a","b"]}]`)
	index := []byte(`{"schemaVersion":2,"manifests":[]}`) // 2 strings
	repos := []byte(`{"r":{"t":"i"}}`)                    // 3 strings
	parse := map[string]func([]byte, int64) error{
		"manifest.json": func(b []byte, max int64) error { _, _, err := ParseManifest(b, max); return err },
		"index.json":    func(b []byte, max int64) error { _, err := ParseIndex(b, max); return err },
		"repositories":  func(b []byte, max int64) error { _, err := ParseRepositories(b, max); return err },
	}
	tests := []struct {
		name    string
		parser  string
		data    []byte
		max     int64
		wantErr error
	}{
		{"no limit", "manifest.json", manifest, 0, nil},
		{"references at the bound", "manifest.json", manifest, 4 * bytesPerRef, nil},
		{"one reference too many", "manifest.json", manifest, 4*bytesPerRef - 1, ErrTooLarge},
		{"strings over the bound", "manifest.json", manifest, 6 * bytesPerString, ErrTooLarge},
		{"index strings at the bound", "index.json", index, 2 * bytesPerString, nil},
		{"index strings over the bound", "index.json", index, 2*bytesPerString - 1, ErrTooLarge},
		{"repositories strings at the bound", "repositories", repos, 3 * bytesPerString, nil},
		{"repositories strings over the bound", "repositories", repos, 3*bytesPerString - 1, ErrTooLarge},
		{"trailing data after manifest.json's value (docker load ignores it)", "manifest.json", append(manifest, ']'), 0, nil},
		{"trailing data after index.json's value", "index.json", append(index, ']'), 0, ErrInvalidManifest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := parse[tc.parser](tc.data, tc.max)
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if err != nil && tc.wantErr == ErrTooLarge && !strings.Contains(err.Error(), tc.parser) {
				t.Errorf("error %q does not name %s", err, tc.parser)
			}
		})
	}
}
