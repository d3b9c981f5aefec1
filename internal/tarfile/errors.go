package tarfile

import (
	"errors"

	"github.com/darc-dev/darc/internal/layout"
)

// Errors that callers branch on. The public archive package re-exports them, so their text
// carries its prefix: these are the values users of archive see.
var (
	// ErrNotDockerArchive means the input is not a tar, or is a tar that holds no image
	// (a `docker export` of a container, a plain layer tar).
	ErrNotDockerArchive = errors.New("archive: not a docker-archive")
	// ErrTooLarge means a configured limit (members, manifest size, config size, spooled size)
	// was exceeded.
	ErrTooLarge = layout.ErrTooLarge
	// ErrInsecurePath means a path from manifest.json (or index.json, repositories) would
	// leave the archive root, or holds a NUL byte. (Member names and link targets cannot leave
	// it: extraction stops a climb at the root.)
	ErrInsecurePath = errors.New("archive: insecure path")
	// ErrBadLink means a link chain that loops, is too long, or points at a member that does
	// not exist or is not a regular file.
	ErrBadLink = errors.New("archive: unresolvable link")
	// ErrNotExtractable means a member that extracting the tar, as docker load does, fails
	// on: a type extraction does not handle, a directory that cannot be created, a hard link
	// to nothing (or to a directory). Docker then loads nothing from the archive.
	ErrNotExtractable = errors.New("archive: member cannot be extracted")
	// ErrMemberNotFound means a member named by manifest.json (or index.json, repositories)
	// is not in the tar.
	ErrMemberNotFound = errors.New("archive: member not found")
	// ErrDigestMismatch means content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("archive: digest mismatch")
	// ErrSizeMismatch means content is not as long as declared.
	ErrSizeMismatch = errors.New("archive: size mismatch")
	// ErrInvalidLayer means a layer's uncompressed content is not a tar, which docker fails
	// to apply.
	ErrInvalidLayer = errors.New("archive: invalid layer")
	// ErrInvalidManifest means manifest.json, repositories, index.json or an image config is
	// malformed or inconsistent.
	ErrInvalidManifest = layout.ErrInvalidManifest
	// ErrImageNotFound means no image matches a selector.
	ErrImageNotFound = errors.New("archive: image not found")
	// ErrAmbiguous means a selector matches more than one image, or none was given and the
	// archive holds several.
	ErrAmbiguous = errors.New("archive: ambiguous image selection")
	// ErrPlatformNotFound means the archive does not hold the platform asked for of an image
	// completely (manifest, config and layers).
	ErrPlatformNotFound = errors.New("archive: platform not in the archive")
)
