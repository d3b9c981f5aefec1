package reference_test

import (
	"errors"
	"testing"

	"github.com/darc-dev/darc/reference"
)

// FuzzParse checks that Parse never panics, that every error wraps
// ErrInvalidReference, and that the canonical form of anything accepted
// parses back to the same reference.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := reference.Parse(in)
		if err != nil {
			if !errors.Is(err, reference.ErrInvalidReference) {
				t.Fatalf("Parse(%q) error %q does not wrap ErrInvalidReference", in, err)
			}
			return
		}
		sel := r.Selector()
		checkSelectorConsistent(t, in, sel)

		s := r.String()
		back, err := reference.Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", in, s, err)
		}
		if back.Path() != r.Path() || back.Selector().Kind() != sel.Kind() || back.Selector().String() != sel.String() {
			t.Fatalf("Parse(%q) = %q, which parses as %q", in, s, back.String())
		}
		if back.String() != s {
			t.Fatalf("Parse(%q).String() = %q, not stable: then %q", in, s, back.String())
		}

		within, err := reference.ParseWithinTransport(r.StringWithinTransport())
		if err != nil || within.String() != s {
			t.Fatalf("ParseWithinTransport(%q) = %q, %v; want %q", r.StringWithinTransport(), within.String(), err, s)
		}
		made, err := reference.New(r.Path(), sel)
		if err != nil || made.String() != s {
			t.Fatalf("New(%q, %q) = %q, %v; want %q", r.Path(), sel.String(), made.String(), err, s)
		}

		k := sel.Kind()
		writable := r.ForWriting() == nil
		if writable != (k == reference.KindNone || k == reference.KindTag) {
			t.Fatalf("Parse(%q).ForWriting() allowed = %v for a %v selector", in, writable, k)
		}
	})
}

// checkSelectorConsistent checks that a parsed selector matches itself and
// that its accessors agree with its kind.
func checkSelectorConsistent(t *testing.T, in string, sel reference.Selector) {
	t.Helper()
	switch sel.Kind() {
	case reference.KindNone:
		if sel.String() != "" {
			t.Fatalf("Parse(%q): selector of kind none prints as %q", in, sel.String())
		}
	case reference.KindTag:
		if sel.Tag() == nil || !sel.MatchTag(sel.String()) {
			t.Fatalf("Parse(%q): tag selector %q does not match itself", in, sel.String())
		}
	case reference.KindIndex:
		if sel.Index() < 0 {
			t.Fatalf("Parse(%q): index %d", in, sel.Index())
		}
	case reference.KindID:
		if err := sel.ID().Validate(); err != nil || !sel.MatchID(sel.ID()) {
			t.Fatalf("Parse(%q): ID %q invalid (%v) or does not match itself", in, sel.ID(), err)
		}
	case reference.KindIDPrefix:
		if n := len(sel.IDPrefix()); n < 12 || n > 64 {
			t.Fatalf("Parse(%q): ID prefix %q of length %d", in, sel.IDPrefix(), n)
		}
	default:
		t.Fatalf("Parse(%q): unknown kind %v", in, sel.Kind())
	}
}
