// Package reference parses and formats the string form of references to
// images inside docker-archive tarballs, and the selectors that pick one
// image out of an archive holding several.
//
// # Grammar
//
//	reference        := transport ":" within-transport
//	transport        := "docker-archive"
//	within-transport := path [ ":" selector ]
//	path             := /[^:]+/                  ; "-" is standard input or output; see Rules for ":"
//	selector         := name-tag | "@" index | "@" image-id | "@" id-prefix
//	name-tag         := name [ ":" tag ]         ; as in github.com/distribution/reference, no digest
//	index            := "0" | /[1-9][0-9]{0,9}/  ; 0-based, at most 2147483647
//	image-id         := algorithm ":" encoded    ; a go-digest digest, e.g. "sha256:" /[a-f0-9]{64}/
//	id-prefix        := /[a-f0-9]{12,64}/        ; leading hex digits of an image ID
//
// # Rules
//
// The path is everything between the transport prefix and the first ":" that
// follows it, so a path can never contain ":" and must not be empty. All that
// follows that ":" is the selector, which must then not be empty either:
// "docker-archive:a.tar:" is rejected, write "docker-archive:a.tar" instead.
//
// One exception, for archives that exist: [ParseWithinTransportExisting] (which
// darc uses to read archives) takes the whole text as the path when it names an
// existing file, and otherwise the longest part before a ":" that names one, so
// "bundle-2024-01-01T10:00:00.tar:@2" names image 2 of that file when it exists.
// Text naming no existing file is read by the rule above.
//
// A name-tag is parsed with [github.com/distribution/reference.ParseNormalizedNamed]:
// "busybox" means "docker.io/library/busybox", a name without a tag gets the
// tag "latest", and upper-case letters in the repository path are an error.
// A name with a digest ("busybox@sha256:…") is an error, because an archive
// records its images by tag.
//
// An index counts the images in the order of the archive's manifest.json,
// starting at 0. It is written in decimal without sign or leading zeros
// ("@01" is an error), so that every index has exactly one spelling.
//
// An image ID is the digest of the image's config, as "docker images
// --no-trunc" prints it. Like docker, an image may also be named by a prefix
// of the hex part of its ID, with no algorithm, of 12 to 64 lower-case hex
// digits. A string of decimal digits after "@" is therefore read by its
// length: up to 11 digits it is an index (and 11 digits are always out of
// range), 12 or more digits are an ID prefix. A 64-digit prefix stays a prefix;
// it is not turned into a full ID, because it names no algorithm.
//
// Only a name-tag selector, or none, may be used to write an image into an
// archive: an index or an ID describes an image that already exists. See
// [Reference.ForWriting].
//
// # Canonical form
//
// [Reference.String] and [Selector.String] give the canonical form, in which a
// name-tag is fully normalized: "docker-archive:a.tar:busybox" is printed as
// "docker-archive:a.tar:docker.io/library/busybox:latest". Parsing the
// canonical form of a parsed reference gives an equal reference.
//
// # Errors
//
// Every parse and construction error wraps [ErrInvalidReference], and also the
// error of github.com/distribution/reference or go-digest when one of those
// rejected the input, so callers can test for it with [errors.Is].
//
// Values of [Reference] and [Selector] are immutable once made and safe for
// concurrent use.
package reference
