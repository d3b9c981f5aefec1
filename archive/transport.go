package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"
	cireference "go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// Transport is darc's docker-archive transport. It is not registered with containers/image's
// global transport list (which has its own docker-archive); parse strings with
// Transport.ParseReference or ParseReference, and pass the references to copy.Image.
var Transport = archiveTransport{}

type archiveTransport struct{}

var _ types.ImageTransport = archiveTransport{}

func (archiveTransport) Name() string { return reference.Transport }

// ParseReference parses PATH[:NAME[:TAG]|:@INDEX|:@ID] (without the "docker-archive:" prefix).
// A PATH with colons is read as the existing file it names (see
// reference.ParseWithinTransportExisting).
func (archiveTransport) ParseReference(s string) (types.ImageReference, error) {
	ref, err := reference.ParseWithinTransportExisting(s, isFile)
	if err != nil {
		return nil, err
	}
	return NewReference(ref), nil
}

// ValidatePolicyConfigurationScope accepts no scope: like containers/image's docker-archive,
// references have no policy identity, so only the transport's default policy applies.
func (archiveTransport) ValidatePolicyConfigurationScope(scope string) error {
	return fmt.Errorf(`archive: scope %q: the docker-archive transport supports only the default scope ""`, scope)
}

// ParseReference parses a full "docker-archive:PATH[:…]" string, as Transport.ParseReference
// parses what follows the prefix.
func ParseReference(s string) (types.ImageReference, error) {
	within, ok := strings.CutPrefix(s, reference.Transport+":")
	if !ok {
		_, err := reference.Parse(s) // says what is wrong
		return nil, err
	}
	return Transport.ParseReference(within)
}

// isFile reports whether path names an existing file that is not a directory.
func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// NewReference returns an image reference for a parsed reference. Image sources made from it
// open the archive themselves and close it when they are closed.
func NewReference(ref reference.Reference) types.ImageReference {
	return archiveReference{ref: ref, sel: ref.Selector(), path: ref.Path()}
}

// archiveReference is the one types.ImageReference of this package: a path, an optional
// handle to an open archive, and a selector. A reference with a handle behaves like one
// parsed from a string; the handle only saves re-opening.
type archiveReference struct {
	ref    reference.Reference // zero when the path cannot be written as a string reference
	path   string
	sel    reference.Selector
	reader *ReadableArchive // optional
	// list makes the source serve the manifest list the image is one platform of, when it
	// is one (see ReadableArchive.ListReference).
	list bool

	// Set for a reference made by WritableArchive.NewReference: the archive, and the
	// reference's position there, which holds its tags (see WritableArchive). No slice here:
	// the struct stays comparable, as interface values compared with == must be.
	writer *WritableArchive
	slot   int
	// from, set by CopyFrom on a destination reference, is the source image layers may be
	// copied from directly.
	from *directSource
}

var _ types.ImageReference = archiveReference{}

func (r archiveReference) Transport() types.ImageTransport { return Transport }

func (r archiveReference) StringWithinTransport() string {
	if r.ref.Path() != "" {
		return r.ref.StringWithinTransport()
	}
	if s := r.sel.String(); s != "" {
		return r.path + ":" + s
	}
	return r.path
}

// DockerReference returns the tag the reference selects, or nil. containers/image has its
// own copy of the reference package, so the tag is converted to its type.
func (r archiveReference) DockerReference() cireference.Named {
	if t := r.sel.Tag(); t != nil {
		if n, err := cireference.ParseNamed(t.String()); err == nil {
			return n
		}
	}
	return nil
}

func (r archiveReference) PolicyConfigurationIdentity() string     { return "" }
func (r archiveReference) PolicyConfigurationNamespaces() []string { return nil }

func (r archiveReference) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	img, err := image.FromSource(ctx, sys, src)
	if err != nil {
		_ = src.Close()
		return nil, err
	}
	return img, nil
}

// NewImageSource opens the selected image. With no archive handle the archive is opened here
// (honouring sys.BigFilesTemporaryDir for spooling) and closed with the source. A platform
// sys chooses (OSChoice, ArchitectureChoice, VariantChoice) is delivered or is an error
// wrapping ErrPlatformNotFound: the image when it is that platform, or that platform's
// manifest of the image's manifest list when the archive holds it completely.
func (r archiveReference) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	a, owned := r.reader, false
	if a == nil {
		var opts []OpenOption
		if sys != nil && sys.BigFilesTemporaryDir != "" {
			opts = append(opts, WithTempDir(sys.BigFilesTemporaryDir))
		}
		var err error
		if a, err = Open(r.path, opts...); err != nil {
			return nil, err
		}
		owned = true
	}
	src, err := r.newSource(a, sys)
	if err != nil {
		if owned {
			_ = a.Close()
		}
		return nil, err
	}
	src.owned = owned
	return src, nil
}

func (r archiveReference) newSource(a *ReadableArchive, sys *types.SystemContext) (*imageSource, error) {
	img, err := a.r.Select(r.sel)
	if err != nil {
		return nil, err
	}
	if r.list {
		if c, ok := img.ListContent(); ok {
			return &imageSource{ref: r, archive: a, img: img, list: c}, nil
		}
	}
	if img, err = img.ForPlatform(sys); err != nil {
		return nil, err
	}
	if _, err := img.Resolve(); err != nil {
		return nil, err
	}
	return &imageSource{ref: r, archive: a, img: img}, nil
}

// NewImageDestination returns a destination that adds one image to the reference's
// WritableArchive. A reference parsed from a string (PATH or PATH:NAME:TAG; an @INDEX or @ID
// selector is refused) gets a single-image archive of its own: created here in DefaultLayout,
// committed by the image's Commit, and removed by Close unless committed.
func (r archiveReference) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	if r.writer != nil {
		return r.writer.newDestination(r, sys, false)
	}
	return newStandaloneDestination(r, sys)
}

func (r archiveReference) DeleteImage(ctx context.Context, sys *types.SystemContext) error {
	return fmt.Errorf("archive %q: deleting an image from an archive is not supported", r.path)
}

// imageSource serves one image of an archive: one manifest, or (list set) the manifest list
// it is one platform of, with the manifests and blobs of that list the archive holds.
type imageSource struct {
	ref     archiveReference
	archive *ReadableArchive
	owned   bool
	img     *tarfile.Image
	list    *tarfile.ListContent
}

var _ types.ImageSource = (*imageSource)(nil)

func (s *imageSource) Reference() types.ImageReference { return s.ref }

func (s *imageSource) Close() error {
	if s.owned {
		return s.archive.Close()
	}
	return nil
}

// GetManifest returns the archive's own manifest for the image when it has one, so the image
// digest is preserved, and otherwise a manifest built from the config. Serving a manifest
// list, it returns the list as stored, and for an instance digest that manifest of it.
func (s *imageSource) GetManifest(ctx context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if s.list != nil {
		if instanceDigest == nil {
			l := s.list.List()
			return l.Data, l.MediaType, nil
		}
		return s.list.Manifest(*instanceDigest)
	}
	res, err := s.img.Resolve()
	if err != nil {
		return nil, "", err
	}
	if instanceDigest != nil {
		if d := digest.FromBytes(res.Manifest); d != *instanceDigest {
			return nil, "", fmt.Errorf("archive %q: %s: %w: no manifest %s (the image is not a manifest list)", s.archive.path, s.img.Name(), ErrImageNotFound, *instanceDigest)
		}
	}
	return res.Manifest, res.ManifestType, nil
}

// HasThreadSafeGetBlob: blobs are independent section readers over the same file.
func (s *imageSource) HasThreadSafeGetBlob() bool { return true }

// GetBlob streams a blob and verifies it on the way: a layer against its digest (the diffID
// for an uncompressed layer), the config against the image ID. A mismatch is returned by Read
// instead of io.EOF.
func (s *imageSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if s.list != nil {
		return s.list.OpenBlob(info.Digest)
	}
	return s.img.OpenBlob(info.Digest, false)
}

func (s *imageSource) GetSignatures(ctx context.Context, instanceDigest *digest.Digest) ([][]byte, error) {
	return nil, nil
}

func (s *imageSource) LayerInfosForCopy(ctx context.Context, instanceDigest *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}
