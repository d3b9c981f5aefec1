package reference

import (
	// go-digest validates only algorithms whose hash is linked into the
	// binary; without these imports every image ID would be "unsupported".
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Kind says which way a [Selector] picks an image.
type Kind int

const (
	KindNone     Kind = iota // no selector: the archive's only image, or an untagged image when writing
	KindTag                  // a normalized name and tag
	KindIndex                // a 0-based position in the archive's manifest.json
	KindID                   // a full image ID (the config digest)
	KindIDPrefix             // 12 to 64 leading hex digits of an image ID
)

// String returns a short lower-case name of k, for messages.
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindTag:
		return "tag"
	case KindIndex:
		return "index"
	case KindID:
		return "id"
	case KindIDPrefix:
		return "id-prefix"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

const (
	// maxIndex keeps an index within int on every platform and far above any
	// real archive, so that the 11-digit limit of the syntax is never reached.
	maxIndex = math.MaxInt32

	// minIDPrefix is the length of the short IDs docker prints; shorter hex
	// strings are too likely to be ambiguous, and short digit strings are indexes.
	minIDPrefix = 12
	maxIDPrefix = 64
)

// Selector picks one image of an archive. The zero value selects nothing in
// particular (KindNone). Selectors are made by [TagSelector], [IndexSelector],
// [IDSelector] and [ParseSelector], which validate their input, so a Selector
// of any other kind is always well formed.
type Selector struct {
	kind  Kind
	tag   distref.NamedTagged // KindTag
	index int                 // KindIndex
	id    string              // KindID: the digest; KindIDPrefix: the hex prefix
}

// TagSelector returns a selector for the image tagged t. t is normalized as
// [ParseSelector] would ("busybox:1" becomes "docker.io/library/busybox:1")
// and any digest it carries is dropped, since archives record tags only.
// A nil t gives the zero Selector. A t that cannot be normalized (possible only
// for values not made by github.com/distribution/reference's parsers) is kept
// as given; it will match no archive tag.
func TagSelector(t distref.NamedTagged) Selector {
	if t == nil {
		return Selector{}
	}
	if n, err := parseTag(t.Name() + ":" + t.Tag()); err == nil {
		t = n
	}
	return Selector{kind: KindTag, tag: t}
}

// IndexSelector returns a selector for the i-th image (0-based) of an
// archive's manifest.json. It fails if i is negative or above 2147483647.
func IndexSelector(i int) (Selector, error) {
	if i < 0 || i > maxIndex {
		return Selector{}, fmt.Errorf("%w: index %d: must be between 0 and %d", ErrInvalidReference, i, maxIndex)
	}
	return Selector{kind: KindIndex, index: i}, nil
}

// IDSelector returns a selector for the image whose ID (config digest) is d.
// d must be a valid digest of an algorithm go-digest supports.
func IDSelector(d digest.Digest) (Selector, error) {
	if err := d.Validate(); err != nil {
		return Selector{}, fmt.Errorf("%w: image ID %q: %w", ErrInvalidReference, d, err)
	}
	return Selector{kind: KindID, id: string(d)}, nil
}

// ParseSelector parses the selector part of a reference, the text after
// "PATH:", such as "busybox", "localhost:5000/a/b:1", "@2",
// "@sha256:<64 hex digits>" or "@0123456789ab". The empty string is an error:
// no selector is written as no ":" after the path, and is the zero Selector.
func ParseSelector(s string) (Selector, error) {
	sel, err := parseSelector(s)
	if err != nil {
		return Selector{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
	}
	return sel, nil
}

// parseSelector returns errors that state only the reason; the exported
// callers add ErrInvalidReference and the text the user gave.
func parseSelector(s string) (Selector, error) {
	if s == "" {
		return Selector{}, errors.New("empty selector")
	}
	at, ok := strings.CutPrefix(s, "@")
	if !ok {
		t, err := parseTag(s)
		if err != nil {
			return Selector{}, err
		}
		return Selector{kind: KindTag, tag: t}, nil
	}
	switch {
	case at == "":
		return Selector{}, errors.New(`missing index or image ID after "@"`)
	case at[0] == '-' || at[0] == '+':
		return Selector{}, errors.New("index must be a non-negative decimal number without a sign")
	case strings.Contains(at, ":"):
		if err := digest.Digest(at).Validate(); err != nil {
			return Selector{}, fmt.Errorf("image ID: %w", err)
		}
		return Selector{kind: KindID, id: at}, nil
	case len(at) < minIDPrefix && isDecimal(at):
		if len(at) > 1 && at[0] == '0' {
			return Selector{}, errors.New("index must not have leading zeros")
		}
		i, err := strconv.Atoi(at)
		if err != nil || i > maxIndex {
			return Selector{}, fmt.Errorf("index out of range: the largest is %d", maxIndex)
		}
		return Selector{kind: KindIndex, index: i}, nil
	case len(at) >= minIDPrefix && len(at) <= maxIDPrefix && isLowerHex(at):
		return Selector{kind: KindIDPrefix, id: at}, nil
	default:
		return Selector{}, fmt.Errorf(`"@" must be followed by a decimal index, an image ID like "sha256:<hex>", or %d to %d lower-case hex digits of an image ID`, minIDPrefix, maxIDPrefix)
	}
}

// NormalizeTag parses s, an entry of RepoTags in an archive's manifest.json,
// into a normalized name and tag: "busybox" and "busybox:latest" both become
// "docker.io/library/busybox:latest". A digested or invalid s is an error
// wrapping [ErrInvalidReference].
func NormalizeTag(s string) (distref.NamedTagged, error) {
	t, err := parseTag(s)
	if err != nil {
		return nil, fmt.Errorf("%w: tag %q: %w", ErrInvalidReference, s, err)
	}
	return t, nil
}

// ParseRepoTag parses s, an entry of RepoTags in an archive's manifest.json, into a
// normalized name and tag. Unlike [NormalizeTag], which reads what a user types, it does not
// add ":latest": an entry without a tag ("busybox") is an error wrapping
// [ErrInvalidReference], as docker load ("invalid tag") and containers/image refuse it.
func ParseRepoTag(s string) (distref.NamedTagged, error) {
	n, err := parseUndigested(s)
	if err == nil {
		if t, ok := n.(distref.NamedTagged); ok {
			return t, nil
		}
		err = errors.New("no tag: an archive names every image with its tag")
	}
	return nil, fmt.Errorf("%w: tag %q: %w", ErrInvalidReference, s, err)
}

// parseTag parses s as a user types a tag: ":latest" is added where s names none.
func parseTag(s string) (distref.NamedTagged, error) {
	n, err := parseUndigested(s)
	if err != nil {
		return nil, err
	}
	t, ok := distref.TagNameOnly(n).(distref.NamedTagged)
	if !ok {
		// TagNameOnly adds a tag to every undigested name; this is defensive.
		return nil, errors.New("name has no tag")
	}
	return t, nil
}

// parseUndigested parses s into a normalized name, refusing a digest.
func parseUndigested(s string) (distref.Named, error) {
	n, err := distref.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if _, ok := n.(distref.Digested); ok {
		return nil, errors.New("a name with a digest is not allowed: images in an archive are addressed by tag")
	}
	return n, nil
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Kind reports how s picks an image.
func (s Selector) Kind() Kind { return s.kind }

// Tag returns the normalized name and tag, or nil unless s is KindTag.
func (s Selector) Tag() distref.NamedTagged {
	if s.kind != KindTag {
		return nil
	}
	return s.tag
}

// Index returns the 0-based index, or -1 unless s is KindIndex.
func (s Selector) Index() int {
	if s.kind != KindIndex {
		return -1
	}
	return s.index
}

// ID returns the full image ID, or "" unless s is KindID.
func (s Selector) ID() digest.Digest {
	if s.kind != KindID {
		return ""
	}
	return digest.Digest(s.id)
}

// IDPrefix returns the hex digits of an image ID prefix, without an algorithm,
// or "" unless s is KindIDPrefix.
func (s Selector) IDPrefix() string {
	if s.kind != KindIDPrefix {
		return ""
	}
	return s.id
}

// String returns the canonical text of s as it follows "PATH:" in a
// reference: "" for KindNone, the fully normalized name and tag
// ("docker.io/library/busybox:latest"), "@2", "@sha256:…" or "@0123456789ab".
func (s Selector) String() string {
	switch s.kind {
	case KindTag:
		return s.tag.String()
	case KindIndex:
		return "@" + strconv.Itoa(s.index)
	case KindID, KindIDPrefix:
		return "@" + s.id
	default:
		return ""
	}
}

// MatchID reports whether s, of KindID or KindIDPrefix, picks the image whose
// ID is id. A prefix matches the hex part of id whatever its algorithm.
// Selectors of other kinds match no ID.
func (s Selector) MatchID(id digest.Digest) bool {
	switch s.kind {
	case KindID:
		return string(id) == s.id
	case KindIDPrefix:
		if id.Validate() != nil {
			return false
		}
		_, hex, _ := strings.Cut(string(id), ":")
		return strings.HasPrefix(hex, s.id)
	default:
		return false
	}
}

// MatchTag reports whether repoTag, an entry of RepoTags in an archive's
// manifest.json, names the same image as s, which must be of KindTag. Both
// sides are compared in normalized form, so Docker's shortened
// "busybox:latest", "library/busybox" and "docker.io/library/busybox:latest"
// are all the same. A repoTag that is invalid, digested or without a tag (see
// [ParseRepoTag]) matches nothing.
func (s Selector) MatchTag(repoTag string) bool {
	if s.kind != KindTag {
		return false
	}
	t, err := ParseRepoTag(repoTag)
	if err != nil {
		return false
	}
	return t.String() == s.tag.String()
}
