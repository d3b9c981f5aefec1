package copy_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
)

// TestParsePlatform covers os/arch[/variant] and its errors.
func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    dcopy.Platform
		wantErr error
	}{
		{"linux/amd64", dcopy.Platform{OS: "linux", Architecture: "amd64"}, nil},
		{"linux/arm64/v8", dcopy.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil},
		{"windows/amd64", dcopy.Platform{OS: "windows", Architecture: "amd64"}, nil},
		// An OS alone used to give an empty platform without an error.
		{"linux", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		{"", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		{"/amd64", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		{"linux/", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		{"linux//v8", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		// A variant, if there is a third part, must not be empty.
		{"linux/arm64/", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
		{"linux/arm64/v8/extra", dcopy.Platform{}, dcopy.ErrInvalidPlatform},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := dcopy.ParsePlatform(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParsePlatform(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), `"`+tc.in+`"`) {
					t.Errorf("ParsePlatform(%q) error %q does not name the string", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePlatform(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParsePlatform(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.String(); s != tc.in {
				t.Errorf("String() = %q, want %q", s, tc.in)
			}
		})
	}
}

// TestOptionErrors: an invalid option value, or an option the function does not use, fails
// the call before anything is copied, with a message naming the option.
func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	fixture := filepath.Join(fixtures, "podman-save-m.tar")
	a, err := archive.Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	src, err := dcopy.ParseSource("docker-archive:" + fixture + ":@0")
	if err != nil {
		t.Fatal(err)
	}
	save := func(opts ...dcopy.Option) error {
		w, err := archive.NewWriter(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		_, err = dcopy.Save(ctx, w, []dcopy.Source{{Ref: src}}, opts...)
		return err
	}
	merge := func(opts ...dcopy.Option) error {
		w, err := archive.NewWriter(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		_, err = dcopy.Merge(ctx, w, []*archive.ReadableArchive{a}, opts...)
		return err
	}
	image := func(opts ...dcopy.Option) error {
		dst, err := dcopy.ParseReference("oci:" + t.TempDir() + ":x")
		if err != nil {
			t.Fatal(err)
		}
		_, err = dcopy.Image(ctx, src, dst, opts...)
		return err
	}
	load := func(opts ...dcopy.Option) error {
		_, err := dcopy.Load(ctx, a, mustDest(t, "oci:"+t.TempDir()), nil, opts...)
		return err
	}
	stream := func(opts ...dcopy.Option) error {
		_, err := dcopy.LoadStream(ctx, strings.NewReader(""), mustDest(t, "oci:"+t.TempDir()), nil, opts...)
		return err
	}
	tests := []struct {
		name    string
		call    func(...dcopy.Option) error
		opt     dcopy.Option
		wantErr error
		named   string // in the message
	}{
		// A Platform without OS or architecture fails at the call that gets it.
		{"Save, empty platform", save, dcopy.WithPlatform(dcopy.Platform{}), dcopy.ErrInvalidPlatform, "WithPlatform"},
		{"Image, platform without architecture", image, dcopy.WithPlatform(dcopy.Platform{OS: "linux"}), dcopy.ErrInvalidPlatform, "WithPlatform"},
		{"Load, platform without OS", load, dcopy.WithPlatform(dcopy.Platform{Architecture: "arm64"}), dcopy.ErrInvalidPlatform, "WithPlatform"},
		{"Save, empty platform: an invalid option", save, dcopy.WithPlatform(dcopy.Platform{}), dcopy.ErrInvalidOption, "WithPlatform"},
		{"Save, no parallelism", save, dcopy.WithParallel(0), dcopy.ErrInvalidOption, "WithParallel(0)"},
		{"LoadStream, no memory for metadata", stream, dcopy.WithStreamMemory(0), dcopy.ErrInvalidOption, "WithStreamMemory(0)"},
		// Load options are refused by the functions that would ignore them.
		{"Save, WithNames", save, dcopy.WithNames(0, tagged(t, "example.com/x:1")), dcopy.ErrInvalidOption, "WithNames"},
		{"Merge, WithBaseNameOnly", merge, dcopy.WithBaseNameOnly(), dcopy.ErrInvalidOption, "WithBaseNameOnly"},
		{"Image, WithNames", image, dcopy.WithNames(0, tagged(t, "example.com/x:1")), dcopy.ErrInvalidOption, "WithNames"},
		// LoadStream options too, Load included.
		{"Save, WithStagingRepository", save, dcopy.WithStagingRepository("stage"), dcopy.ErrInvalidOption, "WithStagingRepository"},
		{"Image, WithStreamMemory", image, dcopy.WithStreamMemory(1 << 20), dcopy.ErrInvalidOption, "WithStreamMemory"},
		{"Load, WithSourceName", load, dcopy.WithSourceName("in.tar"), dcopy.ErrInvalidOption, "WithSourceName"},
		{"Load, WithStagingRepository", load, dcopy.WithStagingRepository("stage"), dcopy.ErrInvalidOption, "WithStagingRepository"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.opt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.named) {
				t.Errorf("error %q does not name %s", err, tc.named)
			}
		})
	}
}

// TestParseSource: a bad source reference is ErrInvalidSource, and the same string as a
// destination ErrInvalidDestination; a good one parses either way.
func TestParseSource(t *testing.T) {
	tests := []struct {
		in    string
		valid bool
	}{
		{"oci:/tmp/layout:app", true},
		{"docker://example.com/app:1", true},
		{"docker-archive:/tmp/bundle.tar:@1", true},
		// No transport.
		{"bundle.tar", false},
		{"nowhere:x", false},
		// The transport's own syntax is wrong.
		{"docker:example.com/app:1", false},
		{"docker-archive:/tmp/bundle.tar:@x", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, serr := dcopy.ParseSource(tc.in)
			_, derr := dcopy.ParseReference(tc.in)
			if tc.valid {
				if serr != nil || derr != nil {
					t.Fatalf("ParseSource: %v; ParseReference: %v", serr, derr)
				}
				return
			}
			if !errors.Is(serr, dcopy.ErrInvalidSource) || errors.Is(serr, dcopy.ErrInvalidDestination) {
				t.Errorf("ParseSource(%q) = %v, want ErrInvalidSource", tc.in, serr)
			}
			if !errors.Is(derr, dcopy.ErrInvalidDestination) || errors.Is(derr, dcopy.ErrInvalidSource) {
				t.Errorf("ParseReference(%q) = %v, want ErrInvalidDestination", tc.in, derr)
			}
		})
	}
}
