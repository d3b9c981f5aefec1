//go:build linux

package benchwork

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Each benchmark variant runs in a child process: the test binary started again with
// -test.run naming a Test function that calls ChildMain. A process of its own gives every
// variant an honest peak RSS (VmHWM), its own /proc/self/io counters and a TMPDIR nobody
// else writes to.
const (
	envChild   = "DARC_BENCH_CHILD"   // variant to run
	envWork    = "DARC_BENCH_WORK"    // the run's scratch directory
	envArgs    = "DARC_BENCH_ARGS"    // JSON map of arguments
	envProfile = "DARC_BENCH_PROFILE" // directory for CPU and heap profiles of the variant
)

// Env is what a variant gets.
type Env struct {
	Work *Workload
	// TempDir is the child's TMPDIR and containers/image's BigFilesTemporaryDir: every temp
	// file is expected here, and TempBytes measures what is written here.
	TempDir string
	// OutDir is an empty directory for the variant's output.
	OutDir string
	// Sys has BigFilesTemporaryDir = TempDir and a fresh, empty BlobInfoCacheDir.
	Sys *types.SystemContext
	// Args are the parent's arguments (input paths).
	Args map[string]string
	// Layers counts reads of the workload's layers through references it wraps.
	Layers *LayerCounter
}

// Policy returns a policy context that accepts everything, like skopeo --insecure-policy.
func (e *Env) Policy() (*signature.PolicyContext, error) {
	return signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
}

// Outcome is what a variant reports back.
type Outcome struct {
	// Outputs are the files or directories the variant produced; their total size is
	// subtracted from the bytes the process wrote to get ExtraWrites.
	Outputs []string
	// Spooled is darc's own count of temp bytes (WriteStats.Spooled, or a ReadableArchive's
	// spool size); -1 when not applicable.
	Spooled int64
	// Check, if set, validates the output after the measurement (not timed).
	Check func() error
}

// Variant is one way of doing a benchmark's work.
type Variant func(ctx context.Context, env *Env) (Outcome, error)

// Result is what a child measured.
type Result struct {
	Variant    string  `json:"variant"`
	Seconds    float64 `json:"seconds"`    // wall time of the work
	CPUSeconds float64 `json:"cpuSeconds"` // user+system time of the process, all threads
	// TempBytes is the sum over temp files under TempDir of the largest size each reached,
	// sampled every few milliseconds through /proc/self/fd, so unlinked temp files count.
	TempBytes int64 `json:"tempBytes"`
	TempFiles int   `json:"tempFiles"`
	Spooled   int64 `json:"spooled"`
	// OutputBytes is the size of the outputs; ExtraWrites is wchar (bytes passed to write
	// system calls by the process) minus OutputBytes.
	OutputBytes int64 `json:"outputBytes"`
	ExtraWrites int64 `json:"extraWrites"`
	IO          procIO
	PeakRSS     int64 `json:"peakRSS"` // VmHWM in bytes
	// CPUWait and IOWait are the shares of the wall time during which some task of the
	// machine (any process) was waiting for a CPU, or for I/O, from /proc/pressure: a
	// measure of contention with everything else running. -1 when unavailable.
	CPUWait float64 `json:"cpuWait"`
	IOWait  float64 `json:"ioWait"`
	// RunDelay is the time this process's threads spent runnable but waiting for a CPU
	// (/proc/self/task/*/schedstat), summed over threads: the CPU time others took from it.
	RunDelay float64 `json:"runDelay"`
	// LayerReads counts GetBlob calls for the workload's layers through wrapped references;
	// UniqueLayers is how many distinct layers were read, MaxReads the most any one was.
	LayerReads   int    `json:"layerReads"`
	UniqueLayers int    `json:"uniqueLayers"`
	MaxReads     int    `json:"maxReads"`
	Err          string `json:"err,omitempty"`
}

type procIO struct {
	RChar, WChar, ReadBytes, WriteBytes, CancelledWriteBytes int64
}

// ChildOptions say how RunChild starts a child.
type ChildOptions struct {
	// Test is the Test function that calls ChildMain, e.g. "TestBenchChild".
	Test string
	// Args are passed to the variant (Env.Args).
	Args map[string]string
	// Stdin, if set, is a file fed to the child's standard input through a pipe.
	Stdin string
	// Bytes is the byte count for MB/s (b.SetBytes semantics).
	Bytes int64
	// InputBytes, if set, gives the read-x metric: bytes read (rchar) / InputBytes.
	InputBytes int64
}

// RunChild runs variant in a child process b.N times and reports, per run: ns/op (the
// variant's own wall time, without process start-up), MB/s from opts.Bytes, temp-B
// (TempBytes), spool-B (darc's own count, when there is one), extra-wB (ExtraWrites),
// peak-MB (VmHWM), cpu-s, runqwait-s (RunDelay: CPU time lost to other processes), read-x
// and, when the variant
// counts layer reads, reads/layer and maxreads/layer. Metrics are averages over b.N runs.
func RunChild(b *testing.B, variant string, opts ChildOptions) []Result {
	b.Helper()
	var results []Result
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		r, err := runChild(b, variant, opts)
		if err != nil {
			b.Fatalf("%s: %v", variant, err)
		}
		results = append(results, r)
	}
	report(b, results, opts)
	return results
}

func report(b *testing.B, rs []Result, opts ChildOptions) {
	n := float64(len(rs))
	var sec, cpu, temp, spool, extra, peak, readx, reads, maxReads, delay float64
	spooled, counted := false, false
	for _, r := range rs {
		sec += r.Seconds
		cpu += r.CPUSeconds
		delay += r.RunDelay
		temp += float64(r.TempBytes)
		extra += float64(r.ExtraWrites)
		peak = max(peak, float64(r.PeakRSS))
		if r.Spooled >= 0 {
			spooled = true
			spool += float64(r.Spooled)
		}
		if opts.InputBytes > 0 {
			readx += float64(r.IO.RChar) / float64(opts.InputBytes)
		}
		if r.UniqueLayers > 0 {
			counted = true
			reads += float64(r.LayerReads) / float64(r.UniqueLayers)
			maxReads = max(maxReads, float64(r.MaxReads))
		}
	}
	b.ReportMetric(sec/n*1e9, "ns/op")
	if opts.Bytes > 0 {
		b.ReportMetric(float64(opts.Bytes)/(sec/n)/1e6, "MB/s")
	}
	b.ReportMetric(cpu/n, "cpu-s")
	b.ReportMetric(delay/n, "runqwait-s")
	b.ReportMetric(temp/n, "temp-B")
	if spooled {
		b.ReportMetric(spool/n, "spool-B")
	}
	b.ReportMetric(extra/n, "extra-wB")
	b.ReportMetric(peak/1e6, "peak-MB")
	if opts.InputBytes > 0 {
		b.ReportMetric(readx/n, "read-x")
	}
	if counted {
		b.ReportMetric(reads/n, "reads/layer")
		b.ReportMetric(maxReads, "maxreads/layer")
	}
}

func runChild(b *testing.B, variant string, opts ChildOptions) (Result, error) {
	work, err := os.MkdirTemp(Dir(), "run-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	for _, d := range []string{"tmp", "out", "bic"} {
		if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
			return Result{}, err
		}
	}
	args, err := json.Marshal(opts.Args)
	if err != nil {
		return Result{}, err
	}
	test := opts.Test
	if test == "" {
		test = "TestBenchChild"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.bench=^$", "-test.v")
	cmd.Env = append(os.Environ(),
		envChild+"="+variant,
		envWork+"="+work,
		envArgs+"="+string(args),
		"DARC_BENCH_DIR="+Dir(), // before TMPDIR changes what Dir() says
		"TMPDIR="+filepath.Join(work, "tmp"),
	)
	if opts.Stdin != "" {
		f, err := os.Open(opts.Stdin)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		cmd.Stdin = struct{ io.Reader }{f} // not an *os.File: the child gets a pipe
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("child failed: %w\n%s", err, tail(out.String(), 4000))
	}
	data, err := os.ReadFile(filepath.Join(work, "result.json"))
	if err != nil {
		return Result{}, fmt.Errorf("no result (%w); child output:\n%s", err, tail(out.String(), 4000))
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, err
	}
	if r.Err != "" {
		return r, fmt.Errorf("%s", r.Err)
	}
	b.Logf("%s: %.2fs, cpu %.2fs, run-queue wait %.2fs, cpu pressure %.0f%%, io pressure %.0f%%, temp %d B in %d files, spooled %d B, output %d B, wchar %d B, rchar %d B, write_bytes %d B, peak RSS %.1f MB, layer reads %d of %d layers (max %d)",
		variant, r.Seconds, r.CPUSeconds, r.RunDelay, 100*r.CPUWait, 100*r.IOWait, r.TempBytes, r.TempFiles, r.Spooled, r.OutputBytes, r.IO.WChar, r.IO.RChar, r.IO.WriteBytes, float64(r.PeakRSS)/1e6, r.LayerReads, r.UniqueLayers, r.MaxReads)
	return r, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ChildMain runs the variant named by the environment when the test binary was started by
// RunChild; otherwise (a normal go test run) it skips at once.
func ChildMain(t *testing.T, variants map[string]Variant) {
	name := os.Getenv(envChild)
	if name == "" {
		t.Skip("runs only as a benchmark child process")
	}
	v, ok := variants[name]
	if !ok {
		t.Skipf("variant %q is not in this test", name)
	}
	work := os.Getenv(envWork)
	res := childRun(name, v, work)
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "result.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func childRun(name string, v Variant, work string) Result {
	res := Result{Variant: name, Spooled: -1}
	fail := func(err error) Result {
		res.Err = err.Error()
		return res
	}
	w, err := load(Dir())
	if err != nil {
		return fail(fmt.Errorf("workload: %w", err))
	}
	env := &Env{
		Work:    w,
		TempDir: filepath.Join(work, "tmp"),
		OutDir:  filepath.Join(work, "out"),
		Layers:  newLayerCounter(w),
	}
	env.Sys = &types.SystemContext{BigFilesTemporaryDir: env.TempDir, BlobInfoCacheDir: filepath.Join(work, "bic")}
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &env.Args); err != nil {
		return fail(err)
	}
	var prof *os.File
	if dir := os.Getenv(envProfile); dir != "" {
		if prof, err = os.Create(filepath.Join(dir, safeName(name)+".cpu.pprof")); err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fail(err)
		}
	}
	poll := startTempPoller(env.TempDir)
	var heap *heapSampler
	if dir := os.Getenv(envProfile); dir != "" {
		heap = startHeapSampler(filepath.Join(dir, safeName(name)+".peakheap.pprof"))
	}
	ctx := context.Background()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	io0, _ := readProcIO()
	cpu0, iow0 := pressure("cpu"), pressure("io")
	delay0 := runDelay()
	start := time.Now()
	out, err := v(ctx, env)
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	io1, _ := readProcIO()
	res.RunDelay = (runDelay() - delay0).Seconds()
	res.CPUWait, res.IOWait = -1, -1
	if cpu1 := pressure("cpu"); cpu0 >= 0 && cpu1 >= 0 {
		res.CPUWait = float64(cpu1-cpu0) / float64(elapsed.Microseconds())
	}
	if iow1 := pressure("io"); iow0 >= 0 && iow1 >= 0 {
		res.IOWait = float64(iow1-iow0) / float64(elapsed.Microseconds())
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	res.TempBytes, res.TempFiles = poll.stop()
	if heap != nil {
		heap.stop()
	}
	if prof != nil {
		pprof.StopCPUProfile()
		_ = prof.Close()
		if hf, herr := os.Create(filepath.Join(os.Getenv(envProfile), safeName(name)+".heap.pprof")); herr == nil {
			_ = pprof.Lookup("allocs").WriteTo(hf, 0)
			_ = hf.Close()
		}
	}
	res.CPUSeconds = cpuSeconds(ru1) - cpuSeconds(ru0)
	res.IO = procIO{
		RChar:               io1.RChar - io0.RChar,
		WChar:               io1.WChar - io0.WChar,
		ReadBytes:           io1.ReadBytes - io0.ReadBytes,
		WriteBytes:          io1.WriteBytes - io0.WriteBytes,
		CancelledWriteBytes: io1.CancelledWriteBytes - io0.CancelledWriteBytes,
	}
	res.PeakRSS = peakRSS()
	res.LayerReads, res.UniqueLayers, res.MaxReads = env.Layers.summary()
	if err != nil {
		return fail(err)
	}
	res.Spooled = out.Spooled
	for _, p := range out.Outputs {
		n, err := treeSize(p)
		if err != nil {
			return fail(err)
		}
		res.OutputBytes += n
	}
	res.ExtraWrites = res.IO.WChar - res.OutputBytes
	if out.Check != nil {
		if err := out.Check(); err != nil {
			return fail(fmt.Errorf("checking the output: %w", err))
		}
	}
	return res
}

func safeName(s string) string { return strings.NewReplacer("/", "_", " ", "_").Replace(s) }

func cpuSeconds(ru syscall.Rusage) float64 {
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// readProcIO reads this process's /proc/self/io.
func readProcIO() (procIO, error) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return procIO{}, err
	}
	var p procIO
	fields := map[string]*int64{"rchar": &p.RChar, "wchar": &p.WChar, "read_bytes": &p.ReadBytes, "write_bytes": &p.WriteBytes, "cancelled_write_bytes": &p.CancelledWriteBytes}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := fields[k]; ok && f != nil {
			*f, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return p, nil
}

// pressure is the "some" total (microseconds during which at least one task waited) of
// /proc/pressure/<resource>, or -1.
func pressure(resource string) int64 {
	data, err := os.ReadFile("/proc/pressure/" + resource)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return -1
				}
				return n
			}
		}
	}
	return -1
}

// runDelay sums the run-queue wait of this process's threads (the second field of
// /proc/self/task/*/schedstat). Threads that exited are missing; the Go runtime keeps its
// threads.
func runDelay() time.Duration {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var total int64
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n
		}
	}
	return time.Duration(total)
}

// peakRSS is VmHWM from /proc/self/status, in bytes.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// treeSize is the size of a file, or of the regular files under a directory.
func treeSize(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// tempPoller samples the files this process has open under a directory, including unlinked
// ones (darc's spool files are unlinked at once), and keeps the largest size each reached.
type tempPoller struct {
	dir  string
	done chan struct{}
	wg   sync.WaitGroup
	max  map[string]int64
}

const pollInterval = 5 * time.Millisecond

func startTempPoller(dir string) *tempPoller {
	p := &tempPoller{dir: dir + "/", done: make(chan struct{}), max: map[string]int64{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			p.sample()
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *tempPoller) sample() {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, fd := range fds {
		link := "/proc/self/fd/" + fd.Name()
		target, err := os.Readlink(link)
		if err != nil || !strings.HasPrefix(target, p.dir) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(link, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		key := strings.TrimSuffix(target, " (deleted)") + "#" + strconv.FormatUint(st.Ino, 10)
		p.max[key] = max(p.max[key], st.Size)
	}
	// Files in the directory that no descriptor holds right now (written and closed, not
	// yet removed) count too.
	_ = filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(path, &st) == nil {
			key := path + "#" + strconv.FormatUint(st.Ino, 10)
			p.max[key] = max(p.max[key], st.Size)
		}
		return nil
	})
}

func (p *tempPoller) stop() (int64, int) {
	close(p.done)
	p.wg.Wait()
	p.sample()
	var n int64
	for _, s := range p.max {
		n += s
	}
	return n, len(p.max)
}

// LayerCounter counts GetBlob calls for the workload's layers (by compressed digest or
// diffID) through the references it wraps.
type LayerCounter struct {
	layers map[digest.Digest]bool
	mu     sync.Mutex
	reads  map[digest.Digest]int
}

func newLayerCounter(w *Workload) *LayerCounter {
	c := &LayerCounter{layers: map[digest.Digest]bool{}, reads: map[digest.Digest]int{}}
	for _, l := range w.Layers {
		c.layers[l.Digest] = true
		c.layers[l.DiffID] = true
	}
	return c
}

func (c *LayerCounter) count(d digest.Digest) {
	if !c.layers[d] {
		return // a config
	}
	c.mu.Lock()
	c.reads[d]++
	c.mu.Unlock()
}

func (c *LayerCounter) summary() (reads, unique, maxReads int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.reads {
		reads += n
		maxReads = max(maxReads, n)
	}
	return reads, len(c.reads), maxReads
}

// Wrap returns ref with its image sources counting layer reads.
func (c *LayerCounter) Wrap(ref types.ImageReference) types.ImageReference {
	return countedRef{ImageReference: ref, c: c}
}

type countedRef struct {
	types.ImageReference
	c *LayerCounter
}

func (r countedRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := r.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return countedSource{ImageSource: src, c: r.c}, nil
}

type countedSource struct {
	types.ImageSource
	c *LayerCounter
}

func (s countedSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, n, err := s.ImageSource.GetBlob(ctx, info, cache)
	if err == nil {
		s.c.count(info.Digest)
	}
	return rc, n, err
}

// heapSampler watches the Go heap while a variant runs (with DARC_BENCH_PROFILE) and writes
// an in-use heap profile each time the heap in use grows past its previous peak by 8 MiB, so
// the last profile written shows what was live near the peak.
type heapSampler struct {
	path string
	done chan struct{}
	wg   sync.WaitGroup
}

func startHeapSampler(path string) *heapSampler {
	h := &heapSampler{path: path, done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var peak uint64
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak+8<<20 {
				peak = ms.HeapInuse
				if f, err := os.Create(h.path); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
			}
		}
	}()
	return h
}

func (h *heapSampler) stop() {
	close(h.done)
	h.wg.Wait()
}
