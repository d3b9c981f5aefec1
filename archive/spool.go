package archive

import "github.com/darc-dev/darc/internal/tarfile"

// NeedsSpool reports whether Open would copy the archive at path to a temp file before
// reading it: "-" (standard input), a pipe or other file that is not a regular one, and a
// compressed file other than a seekable .tar.zst (which Open reads in place, decompressing
// only the frames it needs). A split archive (see Open) is judged as a whole.
// copy.LoadStream loads such an input in one pass instead, without a temp file; an
// uncompressed regular file is best opened in place with Open.
func NeedsSpool(path string) (bool, error) { return tarfile.NeedsSpool(path) }
