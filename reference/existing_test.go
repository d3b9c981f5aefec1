package reference

import (
	"errors"
	"testing"
)

// TestParseWithinTransportExisting: a path with colons is read as the existing file it names,
// the longest that exists; text naming no file is read by the first-colon rule; the canonical
// form parses back to the same reference.
func TestParseWithinTransportExisting(t *testing.T) {
	files := map[string]bool{"b-2024-01-01T10:00:00.tar": true, "a.tar": true, "x:y": true, "x:y:z": true}
	exists := func(p string) bool { return files[p] }
	tests := []struct {
		in, path, sel string
		err           error
	}{
		{"b-2024-01-01T10:00:00.tar", "b-2024-01-01T10:00:00.tar", "", nil},
		{"b-2024-01-01T10:00:00.tar:@2", "b-2024-01-01T10:00:00.tar", "@2", nil},
		{"b-2024-01-01T10:00:00.tar:busybox:1", "b-2024-01-01T10:00:00.tar", "docker.io/library/busybox:1", nil},
		{"x:y:z:@1", "x:y:z", "@1", nil}, // the longest existing path
		{"a.tar:busybox", "a.tar", "docker.io/library/busybox:latest", nil},
		{"new.tar:busybox:1", "new.tar", "docker.io/library/busybox:1", nil}, // no file: first colon
		{"b-2024-01-01T10:00:00.tar:", "", "", ErrInvalidReference},
		{"b-2024-01-01T10:00:00.tar:@x", "", "", ErrInvalidReference},
	}
	for _, tc := range tests {
		r, err := ParseWithinTransportExisting(tc.in, exists)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: got %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r.Path() != tc.path || r.Selector().String() != tc.sel {
			t.Errorf("%q: got path %q selector %q (%v), want %q %q", tc.in, r.Path(), r.Selector().String(), err, tc.path, tc.sel)
			continue
		}
		back, err := ParseWithinTransportExisting(r.StringWithinTransport(), exists)
		if err != nil || back != r {
			t.Errorf("%q: canonical form %q parses back to %+v (%v)", tc.in, r.StringWithinTransport(), back, err)
		}
	}
}
