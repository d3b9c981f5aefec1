// Package copy moves images between docker-archive tarballs and the places containers/image
// reaches: registries (docker://), OCI layouts (oci:), dir: and other archives. It is what
// the darc command runs.
//
// # One copy path
//
// Every image copy, one image or many, goes through containers/image's copy.Image: the
// policy check, manifest conversion, layer compression for the destination and the
// destination's own blob reuse are its decisions, never re-implemented here. darc's speed
// comes through the extension points copy.Image calls, the image source and image
// destination:
//
//   - [Save] and [Merge] write into an archive.WritableArchive. An archive source is opened
//     once for all its images, and each image's destination is paired with its source
//     (archive.CopyFrom), so a layer the output lacks is copied straight from the source
//     archive's member, read and hashed once; a layer it has is not read. Merge, and Save
//     when every source is an archive, copy one image at a time, in order.
//   - [Load] copies the images of an archive.ReadableArchive to a [Destination]. Into an OCI
//     layout or a registry, which want compressed layers, each layer is compressed once for
//     the whole Load, with reused gzip writers, and offered to copy.Image as a substitute for
//     the uncompressed layer (reuse.go); the blob is the one copy.Image would have made.
//   - [Image] copies one image, as `darc cp` does, with the same pairing or compression when
//     its source is an archive.
//   - [LoadStream] is the one place where copy.Image cannot do everything: it reads an
//     archive once, from a pipe, with no temp file, so no layer can be read when copy.Image
//     would ask for it. Each layer is sent to the destination as it passes (compressed as
//     copy.Image would, by the same code as Load); at the end copy.Image writes each image
//     from a source that holds only its manifest and config, and is offered every layer as
//     already there. Its output is Load's, byte for byte (TestLoadStreamMatchesLoad).
//
// What happens to a layer's compression on its way is decided in one function (planLayer,
// compress.go), for Load and LoadStream alike: the one place that repeats a decision of
// copy.Image, so that the blobs darc compresses are the ones copy.Image would make
// (TestLoadOCIMatchesCopyImage and TestLoadStreamMatchesLoad fail when they are not). One
// adapter reaches into containers/image where it has no public API (bic.go): LoadStream into a registry records how a staged blob
// is compressed, so that other repositories mount it; a containers/image that changes the
// method makes LoadStream fail up front with [ErrStreamUnsupported].
//
// # Options and results
//
// Every function takes [Option] values. An option meant for other functions (a Load option
// given to Save, a LoadStream option given to Load) is an error wrapping [ErrInvalidOption],
// as is an invalid value ([WithParallel](0), [WithStreamMemory](0), a [Platform] without OS
// or architecture, which also wraps [ErrInvalidPlatform]). Some options only matter for some
// destinations or inputs and are then without effect: [WithBaseNameOnly] outside a
// registry, [WithNames] for an image that is not loaded, [WithStagingRepository] into an OCI
// layout, [WithParallel] where images go one at a time. Each function returns one
// [Result] per image, in input order, and an error joining every image's failure: a failed
// image does not stop the others. Untagged images that need a name are skipped
// ([ErrUntagged]).
//
// # Concurrency and progress
//
// Save (with sources other than archives) and Load copy the first image alone and then
// [WithParallel] images at once, so that layers shared with the first are found at the
// destination instead of copied twice; into an OCI layout, whose index.json each image
// rewrites, one at a time. The functions are safe to call concurrently on different
// destinations. [WithProgress] receives [Event] values on a goroutine of its own; a slow
// consumer never stalls a copy, and the functions return only once it has handled every
// event.
package copy
