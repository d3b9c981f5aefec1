// Package archive reads and writes docker-archive tarballs that hold any number of images,
// and connects them to containers/image as a transport, so that its copy.Image moves images
// in and out of them.
//
// # What a docker-archive is here
//
// A docker-archive is a tar file, as `docker save`, `podman save -m`, `skopeo copy …
// docker-archive:` and `crane pull` write it: each image's config and layers as members,
// and a manifest.json listing, per image, its config, its layers (base first) and its tags.
// Older and newer variants are read too: legacy v1 directories, the OCI image layout that
// Docker 25 and BuildKit put inside, pre-1.10 archives described only by repositories and
// v1 JSON, and OCI archives described by index.json. The whole file may be compressed with
// gzip, zstd, xz or bzip2, recognized from its content. Within an archive an image is named
// by its position (index, from 0, in the order [ReadableArchive.Images] lists them), by one
// of its tags, or by its ID, the digest of its config.
//
// # Reading
//
// The lifecycle of a [ReadableArchive]:
//
//  1. [Open] a path ("-" is standard input) or [OpenStream] a reader. An uncompressed regular
//     file is read in place; anything else is spooled once to a temp file (see
//     [WithTempDir]). Opening indexes the members and parses the metadata.
//  2. Look at it: [ReadableArchive.Images] lists the images, [ReadableArchive.Select] and
//     [ReadableArchive.SelectEach] pick them with a [reference.Selector],
//     [ReadableArchive.Inspect] reads one image's config, [ReadableArchive.Verify] reads
//     every image's members and checks them against their digests.
//  3. [ReadableArchive.Reference] (one image) or [ReadableArchive.References] (all, by index)
//     give a types.ImageReference that shares the open archive. Pass it as the source of
//     containers/image's copy.Image, or open an image source from it. Every blob a source
//     serves is checked while it is read; a mismatch is the error of Read in place of io.EOF.
//  4. Close every image source, then [ReadableArchive.Close], which removes the spool file.
//     A source made from a shared reference does not close the archive, and MUST be closed
//     before it.
//
// # Writing
//
// The lifecycle of a [WritableArchive]:
//
//  1. [Create] a path (written to a temp file in the same directory; [ErrExists] if the path
//     exists, unless [WithOverwrite]) or [NewWriter] on an io.Writer. [WithLayout] chooses
//     [LayoutDocker] (the default) or [LayoutOCI].
//  2. Per image, [WritableArchive.NewReference] with the image's tags; the order of these
//     calls is the order of the images in the archive.
//  3. Copy each image into its reference with containers/image's copy.Image: it drives every
//     image copy, through this package's image destination, and the image is in the archive
//     once that copy has committed it.
//     Between archives, pair the destination with its source first: [CopyFrom] makes the
//     destination copy each layer it lacks straight from the source archive's member (read
//     once, hashed once as it is written) when copy.Image asks whether it can reuse it. The
//     archive written is the same, byte for byte; only the reading is cheaper.
//  4. [WritableArchive.Commit] writes manifest.json and the other metadata and, for Create,
//     syncs the temp file and renames it onto the path. With no image committed it fails
//     with [ErrNoImages], and with [ErrBusy] while an image destination is open and not
//     committed; the archive stays usable after those two.
//  5. [WritableArchive.Close], always. After Commit it does nothing and returns nil. Without
//     Commit, Create's temp file is removed, so nothing appears at the path and a file already
//     there is left as it was; NewWriter on a file cuts it back to where it started; bytes
//     already written to a stream cannot be taken back.
//
// # Reading in one pass
//
// [ReadStream] reads an archive once, front to back, handing each layer member's bytes to a
// function as they pass and keeping only the metadata in memory:
// the way to load a piped or compressed archive into a destination that can take blobs
// before it knows their images, with nothing written to disk. The [StreamedArchive] it
// returns selects images as a ReadableArchive does; [StreamedImage.Verify] checks an image
// against what passed, and [StreamedImage.Reference] is a copy.Image source serving its
// manifest and config, for a destination that already holds its layers.
//
// # Serving
//
// [Handler] and [NewHandler] serve open archives as a read-only registry (the pull side of
// the OCI Distribution Specification v1.1) as an http.Handler: repositories named after the
// images' tags, manifests as the image sources give them, blobs read by range from the
// archive file or a seekable bundle's frames and checked against their digests as they are
// sent. The archives MUST stay open while the handler is in use.
//
// # References
//
// [Transport] is the types.ImageTransport named "docker-archive". It is not registered in
// containers/image's global list of transports, which has a docker-archive of its own: parse
// with [ParseReference] (the full string) or Transport.ParseReference (without the prefix),
// or build one with [NewReference]. The syntax is
//
//	docker-archive:PATH[:NAME[:TAG]|:@INDEX|:@ID]
//
// where ID is a full image ID (sha256:…) or at least 12 leading hex digits of one; package
// [github.com/darc-dev/darc/reference] holds the exact grammar. No selector names the only
// image of the archive. A reference parsed from a string opens the archive itself when an
// image source is made from it, and closes it with the source. As a copy.Image destination it
// writes a new archive of one image: PATH or PATH:NAME:TAG is accepted, an @INDEX or @ID
// selector is refused (reference.ErrSelectorNotAllowed), the archive is committed with the image and removed unless it is.
// Policy scopes are not supported: only a signature policy's default for the transport
// applies.
//
// # Concurrency
//
// A ReadableArchive is safe for concurrent use, except that Close must not run at the same
// time as any other call; its image sources may read several blobs at once.
//
// A WritableArchive is safe for concurrent use: several copy.Image calls may write into it at
// once, and the archive still comes out the same, in reference order. Commit and Close MUST
// NOT be called while a copy into it is running. One image destination takes its blobs one
// at a time.
//
// # Errors
//
// Conditions a caller may act on are sentinel errors: [ErrNotDockerArchive], [ErrTooLarge],
// [ErrInsecurePath], [ErrBadLink], [ErrNotExtractable], [ErrMemberNotFound], [ErrDigestMismatch],
// [ErrSizeMismatch], [ErrInvalidManifest], [ErrImageNotFound] and [ErrAmbiguous] when
// reading; [ErrExists], [ErrClosed], [ErrNoImages] and [ErrBusy] when writing. A sentinel
// that only one function returns is documented with that function. Errors that report one
// of them wrap it with %w, together with what they are about (the archive's path, the
// image, the member), so test them with errors.Is, never by their text. A malformed
// reference wraps reference.ErrInvalidReference.
package archive
