package archive

import (
	"io"
	"os"
	"strconv"
)

// sendFileRange sends the n bytes of f at off to w so that, when w is a net/http response
// over TCP, the kernel copies them (sendfile(2)) without passing them through the process.
// net/http uses sendfile only for an *os.File, from its current offset, and the archive's
// file is shared by every request: the bytes are sent from a file description of their own,
// opened through /proc/self/fd (the same inode, even after the path was renamed over or
// the file unlinked). It reports false, having sent nothing, when that cannot be opened, and
// otherwise how many bytes it sent and the error that stopped it short of n, if any (reading
// the file or writing to w: io.Copy does not say which).
func sendFileRange(w io.Writer, f *os.File, off, n int64) (bool, int64, error) {
	own, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return false, 0, nil
	}
	defer own.Close()
	if _, err := own.Seek(off, io.SeekStart); err != nil {
		return false, 0, nil
	}
	written, err := io.Copy(w, io.LimitReader(own, n))
	return true, written, err
}
