package archive

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writeback of f's dirty pages (all of them: offset 0, length 0) and
// returns without waiting for it; errors are ignored, as the final fsync reports any.
func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
}
