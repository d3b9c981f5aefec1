package reference_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/reference"
)

const (
	hex64  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	id256  = "sha256:" + hex64
	hex128 = hex64 + hex64
	id512  = "sha512:" + hex128
)

// parseTests is shared with FuzzParse as its seed corpus.
var parseTests = []struct {
	name     string
	in       string
	wantPath string
	wantKind reference.Kind
	wantSel  string // canonical Selector.String()
	wantErr  error  // besides ErrInvalidReference, which every error row must wrap
	isErr    bool
	prefix   bool // the error is about the transport prefix, so ParseWithinTransport is not comparable
}{
	// Paths and no selector.
	{name: "plain path", in: "docker-archive:a.tar", wantPath: "a.tar"},
	{name: "absolute path", in: "docker-archive:/var/tmp/images/a.tar", wantPath: "/var/tmp/images/a.tar"},
	{name: "path with spaces and dots", in: "docker-archive:./my dir/../a b.tar.gz", wantPath: "./my dir/../a b.tar.gz"},
	{name: "path with at sign", in: "docker-archive:@a.tar", wantPath: "@a.tar"},
	{name: "stdin/stdout", in: "docker-archive:-", wantPath: "-"},

	// Name-tag selectors are normalized.
	{name: "stdin with tag", in: "docker-archive:-:busybox", wantPath: "-", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:latest"},
	{name: "short name gets latest", in: "docker-archive:a.tar:busybox", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:latest"},
	{name: "short name with tag", in: "docker-archive:a.tar:busybox:1.36", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:1.36"},
	{name: "full name", in: "docker-archive:a.tar:docker.io/library/busybox:latest", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:latest"},
	{name: "docker.io without library", in: "docker-archive:a.tar:docker.io/busybox:1", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:1"},
	{name: "legacy index.docker.io", in: "docker-archive:a.tar:index.docker.io/busybox:1", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:1"},
	{name: "user repository", in: "docker-archive:a.tar:user/app:v1", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/user/app:v1"},
	{name: "host and port", in: "docker-archive:a.tar:localhost:5000/a/b:1", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "localhost:5000/a/b:1"},
	{name: "host and port without tag", in: "docker-archive:a.tar:localhost:5000/a/b", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "localhost:5000/a/b:latest"},
	{name: "localhost", in: "docker-archive:a.tar:localhost/x:1", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "localhost/x:1"},
	{name: "upper-case tag is valid", in: "docker-archive:a.tar:busybox:Latest", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/busybox:Latest"},
	{name: "algorithm-like name without @ is a name", in: "docker-archive:a.tar:sha256:abc", wantPath: "a.tar", wantKind: reference.KindTag, wantSel: "docker.io/library/sha256:abc"},
	{name: "upper-case name", in: "docker-archive:a.tar:BusyBox", isErr: true},
	{name: "upper-case name with host", in: "docker-archive:a.tar:quay.io/Foo/bar:1", isErr: true},
	{name: "digested name", in: "docker-archive:a.tar:busybox@" + id256, isErr: true},
	{name: "tagged and digested name", in: "docker-archive:a.tar:busybox:1@" + id256, isErr: true},
	{name: "64 hex digits as a name", in: "docker-archive:a.tar:" + hex64, isErr: true},
	{name: "empty tag", in: "docker-archive:a.tar:busybox:", isErr: true},
	{name: "invalid tag character", in: "docker-archive:a.tar:busybox:a/b", isErr: true},
	{name: "too many colons", in: "docker-archive:a.tar:busybox:1:2", isErr: true},

	// Indexes.
	{name: "index 0", in: "docker-archive:a.tar:@0", wantPath: "a.tar", wantKind: reference.KindIndex, wantSel: "@0"},
	{name: "index 12", in: "docker-archive:a.tar:@12", wantPath: "a.tar", wantKind: reference.KindIndex, wantSel: "@12"},
	{name: "largest index", in: "docker-archive:a.tar:@2147483647", wantPath: "a.tar", wantKind: reference.KindIndex, wantSel: "@2147483647"},
	{name: "index above the cap", in: "docker-archive:a.tar:@2147483648", isErr: true},
	{name: "11 digits are always out of range", in: "docker-archive:a.tar:@12345678901", isErr: true},
	{name: "leading zero", in: "docker-archive:a.tar:@01", isErr: true},
	{name: "double zero", in: "docker-archive:a.tar:@00", isErr: true},
	{name: "11 digits with a leading zero", in: "docker-archive:a.tar:@01234567890", isErr: true},
	{name: "negative index", in: "docker-archive:a.tar:@-1", isErr: true},
	{name: "plus sign", in: "docker-archive:a.tar:@+1", isErr: true},
	{name: "space in index", in: "docker-archive:a.tar:@ 1", isErr: true},
	{name: "at sign alone", in: "docker-archive:a.tar:@", isErr: true},
	{name: "double at sign", in: "docker-archive:a.tar:@@1", isErr: true},

	// Image IDs and ID prefixes.
	{name: "full sha256 ID", in: "docker-archive:a.tar:@" + id256, wantPath: "a.tar", wantKind: reference.KindID, wantSel: "@" + id256},
	{name: "full sha512 ID", in: "docker-archive:a.tar:@" + id512, wantPath: "a.tar", wantKind: reference.KindID, wantSel: "@" + id512},
	{name: "short sha256 ID", in: "docker-archive:a.tar:@sha256:0123", isErr: true, wantErr: digest.ErrDigestInvalidLength},
	{name: "upper-case sha256 ID", in: "docker-archive:a.tar:@sha256:" + strings.ToUpper(hex64), isErr: true},
	{name: "unknown algorithm", in: "docker-archive:a.tar:@md5:0123456789abcdef0123456789abcdef", isErr: true, wantErr: digest.ErrDigestUnsupported},
	{name: "algorithm without hex", in: "docker-archive:a.tar:@sha256:", isErr: true, wantErr: digest.ErrDigestInvalidFormat},
	{name: "12-digit hex prefix", in: "docker-archive:a.tar:@0123456789ab", wantPath: "a.tar", wantKind: reference.KindIDPrefix, wantSel: "@0123456789ab"},
	{name: "12 decimal digits are a prefix", in: "docker-archive:a.tar:@012345678901", wantPath: "a.tar", wantKind: reference.KindIDPrefix, wantSel: "@012345678901"},
	{name: "64-digit prefix stays a prefix", in: "docker-archive:a.tar:@" + hex64, wantPath: "a.tar", wantKind: reference.KindIDPrefix, wantSel: "@" + hex64},
	{name: "11 hex digits are too short", in: "docker-archive:a.tar:@0123456789a", isErr: true},
	{name: "65 hex digits are too long", in: "docker-archive:a.tar:@" + hex64 + "0", isErr: true},
	{name: "upper-case hex prefix", in: "docker-archive:a.tar:@0123456789AB", isErr: true},
	{name: "non-hex prefix", in: "docker-archive:a.tar:@0123456789ag", isErr: true},

	// Structure.
	{name: "empty string", in: "", isErr: true, prefix: true},
	{name: "missing prefix", in: "a.tar:busybox", isErr: true, prefix: true},
	{name: "prefix in other case", in: "Docker-Archive:a.tar", isErr: true, prefix: true},
	{name: "other transport", in: "oci-archive:a.tar", isErr: true, prefix: true},
	{name: "prefix without colon", in: "docker-archive", isErr: true, prefix: true},
	{name: "empty path", in: "docker-archive:", isErr: true},
	{name: "empty path with selector", in: "docker-archive::busybox", isErr: true},
	{name: "empty selector", in: "docker-archive:a.tar:", isErr: true},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := reference.Parse(tt.in)
			checkParse(t, "Parse", tt.in, r, err, tt.isErr, tt.wantErr, tt.wantPath, tt.wantKind, tt.wantSel)
			if tt.prefix {
				return
			}
			within := strings.TrimPrefix(tt.in, reference.Transport+":")
			r, err = reference.ParseWithinTransport(within)
			checkParse(t, "ParseWithinTransport", within, r, err, tt.isErr, tt.wantErr, tt.wantPath, tt.wantKind, tt.wantSel)
		})
	}
}

func checkParse(t *testing.T, fn, in string, r reference.Reference, err error, isErr bool, wantErr error, wantPath string, wantKind reference.Kind, wantSel string) {
	t.Helper()
	if isErr {
		if err == nil {
			t.Fatalf("%s(%q) = %q, want an error", fn, in, r.String())
		}
		if !errors.Is(err, reference.ErrInvalidReference) {
			t.Errorf("%s(%q) error %q does not wrap ErrInvalidReference", fn, in, err)
		}
		if wantErr != nil && !errors.Is(err, wantErr) {
			t.Errorf("%s(%q) error %q does not wrap %q", fn, in, err, wantErr)
		}
		if !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("%s(%q) error %q does not name the input", fn, in, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s(%q): %v", fn, in, err)
	}
	if got := r.Path(); got != wantPath {
		t.Errorf("%s(%q).Path() = %q, want %q", fn, in, got, wantPath)
	}
	if got := r.Selector().Kind(); got != wantKind {
		t.Errorf("%s(%q).Selector().Kind() = %v, want %v", fn, in, got, wantKind)
	}
	if got := r.Selector().String(); got != wantSel {
		t.Errorf("%s(%q).Selector().String() = %q, want %q", fn, in, got, wantSel)
	}
	want := reference.Transport + ":" + wantPath
	if wantSel != "" {
		want += ":" + wantSel
	}
	if got := r.String(); got != want {
		t.Errorf("%s(%q).String() = %q, want %q", fn, in, got, want)
	}
}

func TestParseWithinTransportKeepsPrefix(t *testing.T) {
	// The prefix is not stripped a second time: "docker-archive" is read as
	// the path and the rest as a name, which is what containers/image does too.
	r, err := reference.ParseWithinTransport("docker-archive:a.tar")
	if err != nil {
		t.Fatalf("ParseWithinTransport: %v", err)
	}
	if got, want := r.Path(), "docker-archive"; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	if got, want := r.Selector().String(), "docker.io/library/a.tar:latest"; got != want {
		t.Errorf("Selector().String() = %q, want %q", got, want)
	}
}

func mustSelector(t *testing.T, s string) reference.Selector {
	t.Helper()
	sel, err := reference.ParseSelector(s)
	if err != nil {
		t.Fatalf("ParseSelector(%q): %v", s, err)
	}
	return sel
}

func TestNew(t *testing.T) {
	tag := mustSelector(t, "busybox")
	tests := []struct {
		name    string
		path    string
		sel     reference.Selector
		want    string
		wantErr bool
	}{
		// The zero Selector means no selector.
		{name: "no selector", path: "a.tar", want: "docker-archive:a.tar"},
		// Standard output with a tag, as when writing to a pipe.
		{name: "stdout with tag", path: "-", sel: tag, want: "docker-archive:-:docker.io/library/busybox:latest"},
		// An index selector is fine for a reference, ForWriting decides on writing.
		{name: "index", path: "a.tar", sel: mustSelector(t, "@3"), want: "docker-archive:a.tar:@3"},
		{name: "empty path", path: "", sel: tag, wantErr: true},
		// The syntax could not express the path.
		{name: "colon in path", path: "c:a.tar", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := reference.New(tt.path, tt.sel)
			if tt.wantErr {
				if !errors.Is(err, reference.ErrInvalidReference) {
					t.Fatalf("New(%q) error = %v, want ErrInvalidReference", tt.path, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.path, err)
			}
			if got := r.String(); got != tt.want {
				t.Errorf("New(%q).String() = %q, want %q", tt.path, got, tt.want)
			}
			back, err := reference.Parse(r.String())
			if err != nil {
				t.Fatalf("Parse(%q): %v", r.String(), err)
			}
			if back.Path() != r.Path() || back.Selector().String() != r.Selector().String() {
				t.Errorf("Parse(%q) = %q, want %q", r.String(), back.String(), r.String())
			}
		})
	}
}

func TestForWriting(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		allowed bool
	}{
		// An untagged image.
		{name: "no selector", in: "docker-archive:a.tar", allowed: true},
		// The tag is recorded in RepoTags.
		{name: "tag", in: "docker-archive:a.tar:busybox:1", allowed: true},
		// The rest can only address an image that already exists.
		{name: "index", in: "docker-archive:a.tar:@0"},
		{name: "id", in: "docker-archive:a.tar:@" + id256},
		{name: "id prefix", in: "docker-archive:a.tar:@0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := reference.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			err = r.ForWriting()
			if tt.allowed {
				if err != nil {
					t.Errorf("Parse(%q).ForWriting() = %v, want nil", tt.in, err)
				}
				return
			}
			if !errors.Is(err, reference.ErrSelectorNotAllowed) {
				t.Errorf("Parse(%q).ForWriting() = %v, want ErrSelectorNotAllowed", tt.in, err)
			}
			if errors.Is(err, reference.ErrInvalidReference) {
				t.Errorf("Parse(%q).ForWriting() = %v, wraps ErrInvalidReference but the reference is valid", tt.in, err)
			}
		})
	}
}

func TestNormalizeTag(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		// Docker shortens docker.io names in RepoTags.
		{name: "short", in: "busybox:latest", want: "docker.io/library/busybox:latest"},
		// podman and containers/image write the full name.
		{name: "full", in: "docker.io/library/busybox:latest", want: "docker.io/library/busybox:latest"},
		// Some tools write names without a tag.
		{name: "no tag", in: "busybox", want: "docker.io/library/busybox:latest"},
		{name: "library path", in: "library/busybox", want: "docker.io/library/busybox:latest"},
		// podman names locally built images localhost/...
		{name: "localhost", in: "localhost/x:1", want: "localhost/x:1"},
		{name: "other registry", in: "quay.io/a/b:2", want: "quay.io/a/b:2"},
		// A digest has no place in RepoTags.
		{name: "digested", in: "busybox@" + id256, wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "upper case", in: "BusyBox:1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reference.NormalizeTag(tt.in)
			if tt.wantErr {
				if !errors.Is(err, reference.ErrInvalidReference) {
					t.Fatalf("NormalizeTag(%q) error = %v, want ErrInvalidReference", tt.in, err)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
					t.Errorf("NormalizeTag(%q) error %q does not name the input", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeTag(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("NormalizeTag(%q) = %q, want %q", tt.in, got.String(), tt.want)
			}
		})
	}
}
