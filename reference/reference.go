package reference

import (
	"errors"
	"fmt"
	"strings"
)

// Transport is the name of the transport, the prefix of every reference
// before its first ":".
const Transport = "docker-archive"

var (
	// ErrInvalidReference is wrapped by every error about text or values that
	// do not form a valid reference or selector.
	ErrInvalidReference = errors.New("reference: invalid docker-archive reference")

	// ErrSelectorNotAllowed is wrapped when a well-formed selector cannot be
	// used for the operation at hand, such as an index for writing.
	ErrSelectorNotAllowed = errors.New("reference: selector not allowed here")
)

// Reference is a parsed docker-archive reference: the path of an archive and
// a selector for one image in it. The zero value is not a valid reference;
// make one with [New], [Parse] or [ParseWithinTransport].
type Reference struct {
	path string
	sel  Selector
}

// New returns a reference to the image that sel picks in the archive at path.
// path must not be empty and must not contain ":"; "-" stands for standard
// input or output.
func New(path string, sel Selector) (Reference, error) {
	switch {
	case path == "":
		return Reference{}, fmt.Errorf("%w: empty path", ErrInvalidReference)
	case strings.Contains(path, ":"):
		// The path would end at the colon when the reference is parsed back.
		return Reference{}, fmt.Errorf(`%w: path %q: must not contain ":"`, ErrInvalidReference, path)
	}
	return Reference{path: path, sel: sel}, nil
}

// Parse parses a full reference, "docker-archive:PATH[:SELECTOR]". The
// transport prefix is required; use [ParseWithinTransport] for text without it.
func Parse(s string) (Reference, error) {
	within, ok := strings.CutPrefix(s, Transport+":")
	if !ok {
		return Reference{}, fmt.Errorf("%w: %q: missing %q prefix", ErrInvalidReference, s, Transport+":")
	}
	r, err := parseWithinTransport(within)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
	}
	return r, nil
}

// ParseWithinTransport parses the part of a reference after "docker-archive:",
// "PATH[:SELECTOR]", as containers/image's transports pass it.
func ParseWithinTransport(s string) (Reference, error) {
	r, err := parseWithinTransport(s)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
	}
	return r, nil
}

// ParseWithinTransportExisting is ParseWithinTransport for text that may name an archive
// whose path contains ":" (a timestamp in a file name): when the whole of s names an existing
// file (exists reports it), that is the path; otherwise, when the part of s before one of its
// colons does, the longest such part is the path and what follows is the selector; otherwise
// s is parsed as ParseWithinTransport parses it. The canonical form of what it returns parses
// back to the same reference with the same exists, unless another file is named by the path,
// a colon and a leading part of the selector.
func ParseWithinTransportExisting(s string, exists func(path string) bool) (Reference, error) {
	if s != "" && exists(s) {
		return Reference{path: s}, nil
	}
	for i := strings.LastIndexByte(s, ':'); i > 0; i = strings.LastIndexByte(s[:i], ':') {
		if !exists(s[:i]) {
			continue
		}
		if s[i+1:] == "" {
			return Reference{}, fmt.Errorf("%w: %q: empty selector after %q", ErrInvalidReference, s, s[:i+1])
		}
		sel, err := parseSelector(s[i+1:])
		if err != nil {
			return Reference{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
		}
		return Reference{path: s[:i], sel: sel}, nil
	}
	return ParseWithinTransport(s)
}

func parseWithinTransport(s string) (Reference, error) {
	path, rest, hasSel := strings.Cut(s, ":")
	if path == "" {
		return Reference{}, errors.New("empty path")
	}
	r := Reference{path: path}
	if hasSel {
		if rest == "" {
			return Reference{}, fmt.Errorf(`empty selector after "%s:"`, path)
		}
		sel, err := parseSelector(rest)
		if err != nil {
			return Reference{}, err
		}
		r.sel = sel
	}
	return r, nil
}

// Path returns the archive's path; "-" means standard input or output.
func (r Reference) Path() string { return r.path }

// Selector returns the selector, the zero Selector if there is none.
func (r Reference) Selector() Selector { return r.sel }

// String returns the canonical form of r, with the transport prefix.
func (r Reference) String() string {
	return Transport + ":" + r.StringWithinTransport()
}

// StringWithinTransport returns the canonical form of r without the transport
// prefix: "PATH" or "PATH:SELECTOR".
func (r Reference) StringWithinTransport() string {
	if r.sel.Kind() == KindNone {
		return r.path
	}
	return r.path + ":" + r.sel.String()
}

// ForWriting reports whether r may name an image to be written: only a
// name-tag selector or none is allowed, since an index or an image ID can
// only describe an image that is already in an archive. The error wraps
// [ErrSelectorNotAllowed].
func (r Reference) ForWriting() error {
	switch k := r.sel.Kind(); k {
	case KindNone, KindTag:
		return nil
	default:
		return fmt.Errorf("%w: %q: an image being written can be named by a tag or nothing, not by an %s selector",
			ErrSelectorNotAllowed, r.String(), k)
	}
}
