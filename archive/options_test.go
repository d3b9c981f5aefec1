package archive_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darc-dev/darc/archive"
)

// TestOptionErrors: a value an option cannot take, or a combination that cannot be honoured,
// fails the constructor with a message naming the option, and leaves nothing behind.
func TestOptionErrors(t *testing.T) {
	fixture := filepath.Join(fixtureDir, "podman-save-m.tar")
	tests := []struct {
		name string
		call func(dir string) error
		want string // in the message
	}{
		// Zero is not "the default": it is refused.
		{"Open WithMaxMembers(0)", func(string) error { return openErr(archive.Open(fixture, archive.WithMaxMembers(0))) }, "WithMaxMembers(0)"},
		{"Open WithMaxManifestSize(-1)", func(string) error { return openErr(archive.Open(fixture, archive.WithMaxManifestSize(-1))) }, "WithMaxManifestSize(-1)"},
		{"OpenStream WithMaxSpoolSize(0)", func(string) error {
			return openErr(archive.OpenStream(strings.NewReader(""), archive.WithMaxSpoolSize(0)))
		}, "WithMaxSpoolSize(0)"},
		{"Create WithWriteMaxConfigSize(0)", func(dir string) error {
			return createErr(archive.Create(filepath.Join(dir, "out.tar"), archive.WithWriteMaxConfigSize(0)))
		}, "WithWriteMaxConfigSize(0)"},
		// NewWriter has no file to replace.
		{"NewWriter WithOverwrite(true)", func(string) error {
			return createErr(archive.NewWriter(io.Discard, archive.WithOverwrite(true)))
		}, "WithOverwrite(true)"},
		{"Create legacy dirs in the oci layout", func(dir string) error {
			return createErr(archive.Create(filepath.Join(dir, "out.tar"), archive.WithLayout(archive.LayoutOCI), archive.WithLegacyDirs(true)))
		}, "legacy directories"},
		{"Create unknown layout", func(dir string) error {
			return createErr(archive.Create(filepath.Join(dir, "out.tar"), archive.WithLayout("zip")))
		}, `"zip"`},
		{"Create time before 1970", func(dir string) error {
			return createErr(archive.Create(filepath.Join(dir, "out.tar"), archive.WithSourceDateEpoch(time.Unix(-1, 0))))
		}, "modification time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := tc.call(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("the failed constructor left %d files behind", len(entries))
			}
		})
	}
}

func openErr(a *archive.ReadableArchive, err error) error {
	if a != nil {
		a.Close()
	}
	return err
}

func createErr(a *archive.WritableArchive, err error) error {
	if a != nil {
		a.Close()
	}
	return err
}

// TestSentinelText: the sentinels read as this package's, including those it re-exports from
// internal/tarfile.
func TestSentinelText(t *testing.T) {
	for _, err := range []error{
		archive.ErrNotDockerArchive, archive.ErrTooLarge, archive.ErrInsecurePath, archive.ErrBadLink, archive.ErrNotExtractable,
		archive.ErrMemberNotFound, archive.ErrDigestMismatch, archive.ErrSizeMismatch,
		archive.ErrInvalidManifest, archive.ErrImageNotFound, archive.ErrAmbiguous,
		archive.ErrExists, archive.ErrClosed, archive.ErrNoImages, archive.ErrBusy, archive.ErrCannotPair,
	} {
		t.Run(err.Error(), func(t *testing.T) {
			if !strings.HasPrefix(err.Error(), "archive: ") {
				t.Errorf("%q does not start with \"archive: \"", err)
			}
		})
	}
}
