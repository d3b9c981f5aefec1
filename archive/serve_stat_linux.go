package archive

import (
	"os"
	"syscall"
)

// statusChanged reports whether the file's status change time (ctime) moved between two
// stats while the file still has a name. Every write, truncation and change of times moves
// it, and no one can set it back, so a file changed in place with its modification time put
// back is still seen. The file losing its last name (another renamed over it, or removed)
// moves it too, without touching its bytes: that is not counted.
func statusChanged(was, now os.FileInfo) bool {
	a, ok := was.Sys().(*syscall.Stat_t)
	b, ok2 := now.Sys().(*syscall.Stat_t)
	return ok && ok2 && b.Nlink > 0 && a.Ctim != b.Ctim
}
