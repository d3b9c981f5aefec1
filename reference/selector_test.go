package reference_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/reference"
)

// mustNamedTagged builds a tag with distribution/reference's constructors,
// which, unlike its parsers, do not normalize.
func mustNamedTagged(t *testing.T, name, tag string) distref.NamedTagged {
	t.Helper()
	n, err := distref.WithName(name)
	if err != nil {
		t.Fatalf("WithName(%q): %v", name, err)
	}
	nt, err := distref.WithTag(n, tag)
	if err != nil {
		t.Fatalf("WithTag(%q, %q): %v", name, tag, err)
	}
	return nt
}

func TestTagSelector(t *testing.T) {
	digested, err := distref.ParseNormalizedNamed("busybox:1@" + id256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		in       distref.NamedTagged
		wantKind reference.Kind
		want     string
	}{
		// nil is no selector rather than a panic later.
		{name: "nil", in: nil, wantKind: reference.KindNone, want: ""},
		// A familiar name is normalized as ParseSelector would.
		{name: "familiar", in: mustNamedTagged(t, "busybox", "1"), wantKind: reference.KindTag, want: "docker.io/library/busybox:1"},
		{name: "normalized", in: mustNamedTagged(t, "quay.io/a/b", "2"), wantKind: reference.KindTag, want: "quay.io/a/b:2"},
		// Archives record tags only, so the digest goes.
		{name: "tagged and digested", in: digested.(distref.NamedTagged), wantKind: reference.KindTag, want: "docker.io/library/busybox:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := reference.TagSelector(tt.in)
			if s.Kind() != tt.wantKind {
				t.Errorf("Kind() = %v, want %v", s.Kind(), tt.wantKind)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if tt.wantKind == reference.KindTag && s.Tag().String() != tt.want {
				t.Errorf("Tag() = %q, want %q", s.Tag().String(), tt.want)
			}
		})
	}
}

func TestIndexSelector(t *testing.T) {
	tests := []struct {
		name    string
		in      int
		wantErr bool
	}{
		{name: "zero", in: 0},
		{name: "largest", in: math.MaxInt32},
		{name: "negative", in: -1, wantErr: true},
		// The syntax caps the index; a constructed one must be printable.
		{name: "above the cap", in: math.MaxInt32 + 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := reference.IndexSelector(tt.in)
			if tt.wantErr {
				if !errors.Is(err, reference.ErrInvalidReference) {
					t.Fatalf("IndexSelector(%d) error = %v, want ErrInvalidReference", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("IndexSelector(%d): %v", tt.in, err)
			}
			if s.Kind() != reference.KindIndex || s.Index() != tt.in {
				t.Errorf("IndexSelector(%d) = %v %d, want index %d", tt.in, s.Kind(), s.Index(), tt.in)
			}
			back := mustSelector(t, s.String())
			if back.Index() != tt.in {
				t.Errorf("ParseSelector(%q).Index() = %d, want %d", s.String(), back.Index(), tt.in)
			}
		})
	}
}

func TestIDSelector(t *testing.T) {
	tests := []struct {
		name    string
		in      digest.Digest
		wantErr error
	}{
		{name: "sha256", in: id256},
		{name: "sha512", in: id512},
		{name: "empty", in: "", wantErr: digest.ErrDigestInvalidFormat},
		{name: "short", in: "sha256:0123", wantErr: digest.ErrDigestInvalidLength},
		// A prefix must go through ParseSelector, not pose as a digest.
		{name: "hex only", in: hex64, wantErr: digest.ErrDigestInvalidFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := reference.IDSelector(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, reference.ErrInvalidReference) || !errors.Is(err, tt.wantErr) {
					t.Fatalf("IDSelector(%q) error = %v, want ErrInvalidReference and %v", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("IDSelector(%q): %v", tt.in, err)
			}
			if s.Kind() != reference.KindID || s.ID() != tt.in {
				t.Errorf("IDSelector(%q) = %v %q, want the ID", tt.in, s.Kind(), s.ID())
			}
			if got, want := s.String(), "@"+string(tt.in); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
}

func TestParseSelectorEmpty(t *testing.T) {
	// No selector is spelled by leaving out ":" after the path, never as "".
	if s, err := reference.ParseSelector(""); !errors.Is(err, reference.ErrInvalidReference) {
		t.Errorf("ParseSelector(\"\") = %v, %v; want ErrInvalidReference", s.Kind(), err)
	}
}

func TestSelectorAccessors(t *testing.T) {
	tests := []struct {
		name   string
		sel    reference.Selector
		tag    string
		index  int
		id     digest.Digest
		prefix string
	}{
		// Every accessor of a kind it does not belong to gives its empty value.
		{name: "zero", sel: reference.Selector{}, index: -1},
		{name: "tag", sel: mustSelector(t, "busybox"), tag: "docker.io/library/busybox:latest", index: -1},
		{name: "index", sel: mustSelector(t, "@7"), index: 7},
		{name: "id", sel: mustSelector(t, "@"+id256), index: -1, id: id256},
		{name: "id prefix", sel: mustSelector(t, "@0123456789ab"), index: -1, prefix: "0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotTag := ""
			if tag := tt.sel.Tag(); tag != nil {
				gotTag = tag.String()
			}
			if gotTag != tt.tag {
				t.Errorf("Tag() = %q, want %q", gotTag, tt.tag)
			}
			if got := tt.sel.Index(); got != tt.index {
				t.Errorf("Index() = %d, want %d", got, tt.index)
			}
			if got := tt.sel.ID(); got != tt.id {
				t.Errorf("ID() = %q, want %q", got, tt.id)
			}
			if got := tt.sel.IDPrefix(); got != tt.prefix {
				t.Errorf("IDPrefix() = %q, want %q", got, tt.prefix)
			}
		})
	}
}

func TestMatchTag(t *testing.T) {
	tests := []struct {
		name    string
		sel     string
		repoTag string
		want    bool
	}{
		// Docker's shortened form.
		{name: "short form", sel: "busybox", repoTag: "busybox:latest", want: true},
		// podman's and containers/image's full form.
		{name: "full form", sel: "busybox", repoTag: "docker.io/library/busybox:latest", want: true},
		// An entry without a tag is invalid in an archive (docker load: "invalid tag"): it
		// names no image, so nothing matches it.
		{name: "library path without tag", sel: "busybox", repoTag: "library/busybox", want: false},
		{name: "full selector, short tag", sel: "docker.io/library/busybox:latest", repoTag: "busybox:latest", want: true},
		{name: "localhost", sel: "localhost/x:1", repoTag: "localhost/x:1", want: true},
		{name: "host and port", sel: "localhost:5000/a/b:1", repoTag: "localhost:5000/a/b:1", want: true},
		// Same path on another registry is another image.
		{name: "other registry", sel: "busybox", repoTag: "quay.io/busybox:latest"},
		{name: "other tag", sel: "busybox", repoTag: "busybox:1.36"},
		{name: "localhost is not docker.io", sel: "x:1", repoTag: "localhost/x:1"},
		// Tags are case-sensitive.
		{name: "tag case", sel: "busybox:latest", repoTag: "busybox:Latest"},
		// Garbage in an archive matches nothing rather than failing.
		{name: "invalid repo tag", sel: "busybox", repoTag: "Busybox:latest"},
		{name: "digested repo tag", sel: "busybox", repoTag: "busybox@" + id256},
		{name: "empty repo tag", sel: "busybox", repoTag: ""},
		// Only tag selectors match tags.
		{name: "index selector", sel: "@0", repoTag: "busybox:latest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSelector(t, tt.sel)
			if got := s.MatchTag(tt.repoTag); got != tt.want {
				t.Errorf("ParseSelector(%q).MatchTag(%q) = %v, want %v", tt.sel, tt.repoTag, got, tt.want)
			}
		})
	}
	if (reference.Selector{}).MatchTag("busybox:latest") {
		t.Errorf("zero Selector matches a tag")
	}
}

func TestMatchID(t *testing.T) {
	other := digest.Digest("sha256:" + "f" + hex64[1:])
	tests := []struct {
		name string
		sel  string
		id   digest.Digest
		want bool
	}{
		{name: "full", sel: "@" + id256, id: id256, want: true},
		{name: "full, other ID", sel: "@" + id256, id: other},
		// Same hex under another algorithm is another ID.
		{name: "full, other algorithm", sel: "@" + id256, id: digest.Digest("sha384:" + hex64)},
		{name: "prefix", sel: "@0123456789ab", id: id256, want: true},
		{name: "longer prefix", sel: "@" + hex64[:40], id: id256, want: true},
		{name: "whole hex as prefix", sel: "@" + hex64, id: id256, want: true},
		{name: "prefix of a sha512 ID", sel: "@0123456789ab", id: id512, want: true},
		{name: "prefix, other ID", sel: "@0123456789ab", id: other},
		// The prefix is of the hex part, never of "sha256:".
		{name: "prefix does not span the algorithm", sel: "@0123456789ab", id: digest.Digest("0123456789ab:" + hex64)},
		{name: "prefix, invalid ID", sel: "@0123456789ab", id: "sha256:0123456789abc"},
		{name: "prefix, empty ID", sel: "@0123456789ab", id: ""},
		// Only ID selectors match IDs.
		{name: "index selector", sel: "@0", id: id256},
		{name: "tag selector", sel: "busybox", id: id256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSelector(t, tt.sel)
			if got := s.MatchID(tt.id); got != tt.want {
				t.Errorf("ParseSelector(%q).MatchID(%q) = %v, want %v", tt.sel, tt.id, got, tt.want)
			}
		})
	}
	if (reference.Selector{}).MatchID(id256) {
		t.Errorf("zero Selector matches an ID")
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    reference.Kind
		want string
	}{
		{reference.KindNone, "none"},
		{reference.KindTag, "tag"},
		{reference.KindIndex, "index"},
		{reference.KindID, "id"},
		{reference.KindIDPrefix, "id-prefix"},
		// Out-of-range values still print something useful.
		{reference.Kind(42), "Kind(42)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tt.k), got, tt.want)
		}
	}
}

func TestParseRepoTag(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want "": an error wrapping ErrInvalidReference
	}{
		// Docker's shortened form: the name is normalized, the tag kept.
		{"short", "busybox:1", "docker.io/library/busybox:1"},
		{"full", "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"registry with port", "localhost:5000/a/b:1", "localhost:5000/a/b:1"},
		// docker load refuses an entry without a tag ("invalid tag"): no ":latest" is added.
		{"no tag", "busybox", ""},
		{"registry with port, no tag", "localhost:5000/a/b", ""},
		{"digested", "busybox:1@sha256:" + strings.Repeat("a", 64), ""},
		{"upper case", "BusyBox:1", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reference.ParseRepoTag(tc.in)
			if tc.want == "" {
				if !errors.Is(err, reference.ErrInvalidReference) {
					t.Fatalf("ParseRepoTag(%q) = %v, %v; want ErrInvalidReference", tc.in, got, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParseRepoTag(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}
