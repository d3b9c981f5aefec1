package archive

import "os"

// writebackEvery is how many bytes Create's temp file takes between two requests to start
// writing dirty pages back.
const writebackEvery = 32 << 20

// writebackFile is the temp file of Create. Every writebackEvery bytes it asks the kernel to
// start writing the file's dirty pages to disk without waiting for them (startWriteback), so
// the disk works while the archive is still being produced and Commit's fsync finds little
// left to do. Otherwise the whole archive would sit in the page cache until Commit (the
// kernel's background writeback starts only at 10% of RAM) and then be written while
// nothing else happens. It changes nothing about what is written or when it is durable.
type writebackFile struct {
	*os.File
	pending int64
}

func (f *writebackFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.pending += int64(n)
	if f.pending >= writebackEvery {
		f.pending = 0
		startWriteback(f.File)
	}
	return n, err
}
