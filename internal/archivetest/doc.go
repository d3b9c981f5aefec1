// Package archivetest generates docker-archive tarballs for tests, in every layout that real
// tools write, plus hostile and edge-case archives.
//
// Everything here is deterministic: the same inputs give byte-identical output (fixed
// modification times, insertion or sorted order, no map iteration that reaches the output).
// Nothing here reads the host or the network, so tests that use it run anywhere.
//
// # Layouts
//
// [Build] writes a list of [Image] values in one [Layout]. Each layout reproduces what its tool
// writes: member names, member order, directory entries, symlinks, header modes and times, the
// shapes of manifest.json, repositories, index.json and oci-layout, and media types. The
// comment on each Layout constant says which tool and code path it models and what is notable
// about it. Where a tool's output is not deterministic (Docker and crane iterate Go maps) the
// generator uses the input order instead; a reader must not depend on either.
//
// The layouts were checked against real output: rebuilt from the images inside them, the
// fixtures in testdata/archives (podman save -m, skopeo copy, buildah push, docker 20.10 save,
// crane pull, crane pull --format legacy) come out byte for byte the same, except for the
// wall-clock mtimes Docker leaves on symlinked v1 directories. Docker25, BuildKit and Legacy
// follow the source of moby, containerd's exporter and Docker 1.9; no tool here writes them.
//
// [Expect] says what a correct reader must report for an archive made by Build: one
// [ExpectedImage] per manifest.json entry, in manifest.json order.
//
// # Hostile input
//
// [Tar] writes raw entries, including names that archive/tar permits but a reader must refuse
// (`../x`, `/abs`, a name twice). The functions [SymlinkChain], [HardlinkLayer],
// [DuplicateMember], [EscapingSymlink], [SymlinkCycle], [LongChain], [ManifestDotDot],
// [ManifestDotDotInside], [ManifestAbsolute], [NotATar], [ExportedFS] and [BZhMember] return
// ready-made edge cases, each documenting what a correct reader must do with it. The valid ones
// among them contain [EdgeImage], which a reader must report as [EdgeExpected].
//
// # Scale
//
// [BigArchive] streams an archive with many thousands of images and about as many members as
// asked for, without holding it in memory.
package archivetest
