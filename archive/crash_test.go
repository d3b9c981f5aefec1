package archive_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// Crash safety: a child process (this test binary, re-executed to run TestCrashChild) writes
// a multi-image archive with Create and Commit and stops at named points, printing
// "CRASH-MARK <point>" and waiting for a line on standard input before it goes on. The parent
// kills it with SIGKILL at one point per run and then looks at the output directory: the
// target is absent or holds the previous file byte for byte (or, once Commit has returned,
// the complete new archive), never a partial archive, and anything else left is a temp file
// that the writer names ".<target>.<random>.darc-tmp".

const (
	crashEnvSrc       = "DARC_CRASH_SRC"
	crashEnvOut       = "DARC_CRASH_OUT"
	crashEnvOverwrite = "DARC_CRASH_OVERWRITE"
	crashEnvCache     = "DARC_CRASH_CACHE"
	crashMark         = "CRASH-MARK "
	// crashImages images of one crashLayerSize layer each: the source is about 4 MiB.
	crashImages    = 4
	crashLayerSize = 1 << 20
	// crashMidLayer is where the child pauses inside a layer.
	crashMidLayer = 512 << 10
)

// crashTempName is how Create names its temp file for a target called out.tar.
var crashTempName = regexp.MustCompile(`^\.out\.tar\.[0-9]+\.darc-tmp$`)

// TestCrashChild is the child of TestCrashKill; it does nothing unless that test runs it.
func TestCrashChild(t *testing.T) {
	src := os.Getenv(crashEnvSrc)
	if src == "" {
		t.Skip("the child process of TestCrashKill")
	}
	ctx := context.Background()
	in := bufio.NewReader(os.Stdin)
	mark := func(point string) {
		fmt.Printf("%s%s\n", crashMark, point)
		if _, err := in.ReadString('\n'); err != nil {
			t.Fatalf("waiting at %s: %v", point, err)
		}
	}
	r, err := archive.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := archive.Create(os.Getenv(crashEnvOut), archive.WithOverwrite(os.Getenv(crashEnvOverwrite) == "1"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mark("created")
	sys := &types.SystemContext{BlobInfoCacheDir: os.Getenv(crashEnvCache)}
	opts := &copy.Options{SourceCtx: sys, DestinationCtx: sys}
	for i, info := range r.Images() {
		dst, err := w.NewReference(info.Tags...)
		if err != nil {
			t.Fatal(err)
		}
		src := &crashPauseRef{ImageReference: r.References()[i], after: crashMidLayer,
			pause: func() { mark(fmt.Sprintf("image %d mid-layer", i)) }}
		if _, err := copy.Image(ctx, policyContext(t), dst, src, opts); err != nil {
			t.Fatal(err)
		}
		mark(fmt.Sprintf("image %d copied", i))
	}
	mark("before Commit")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	mark("after Commit")
}

// crashPauseRef is a source whose first layer calls pause once after some bytes were read.
type crashPauseRef struct {
	types.ImageReference
	after int
	pause func()
}

func (r *crashPauseRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := r.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return &crashPauseSrc{ImageSource: src, ref: r}, nil
}

type crashPauseSrc struct {
	types.ImageSource
	ref *crashPauseRef
}

func (s *crashPauseSrc) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, size, err := s.ImageSource.GetBlob(ctx, info, cache)
	// Only a layer is this large; the config is a few hundred bytes.
	if err != nil || size < int64(s.ref.after) {
		return rc, size, err
	}
	return &crashPauseReader{rc: rc, left: s.ref.after, pause: s.ref.pause}, size, nil
}

type crashPauseReader struct {
	rc    io.ReadCloser
	left  int
	pause func()
}

func (r *crashPauseReader) Read(p []byte) (int, error) {
	if r.left == 0 && r.pause != nil {
		r.pause()
		r.pause = nil
	}
	if r.pause != nil && len(p) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	if r.pause != nil {
		r.left -= n
	}
	return n, err
}

func (r *crashPauseReader) Close() error { return r.rc.Close() }

// crashSource writes the source archive: crashImages images, one distinct layer each.
func crashSource(t *testing.T, path string) {
	t.Helper()
	var images []archivetest.Image
	for i := range crashImages {
		images = append(images, archivetest.Image{
			Tags:   []string{fmt.Sprintf("example.com/crash/%d:1", i)},
			Layers: [][]byte{archivetest.Layer(int64(100+i), 1, crashLayerSize)},
		})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := archivetest.Build(f, images, archivetest.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// crashPoint is where the parent kills the child.
type crashPoint struct {
	mark string
	// race: let the child go on from mark and kill it after delay, racing what it does next.
	race  bool
	delay time.Duration
}

func (p crashPoint) String() string {
	if p.race {
		return fmt.Sprintf("%s, then %v", p.mark, p.delay)
	}
	return p.mark
}

// TestCrashKill kills a multi-image write with SIGKILL at several points, with no file at the
// target and with a previous file replaced by WithOverwrite.
func TestCrashKill(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.tar")
	crashSource(t, src)
	want := wtReadBack(t, src)
	previous, err := os.ReadFile(filepath.Join(fixtureDir, "skopeo-copy.tar"))
	if err != nil {
		t.Fatal(err)
	}
	points := []crashPoint{
		{mark: "created"},
		{mark: "image 0 mid-layer"},
		{mark: "image 0 copied"},
		{mark: "image 2 mid-layer"},
		{mark: fmt.Sprintf("image %d copied", crashImages-1)},
		{mark: "before Commit"},
		{mark: "before Commit", race: true, delay: 0},
		{mark: "before Commit", race: true, delay: time.Millisecond},
		{mark: "before Commit", race: true, delay: 5 * time.Millisecond},
		{mark: "after Commit"},
	}
	type row struct{ point, before, target, leftovers string }
	var table []row
	for _, withPrevious := range []bool{false, true} {
		for _, p := range points {
			name := p.String()
			if withPrevious {
				name = "previous file, " + name
			}
			t.Run(name, func(t *testing.T) {
				out := t.TempDir()
				target := filepath.Join(out, "out.tar")
				if withPrevious {
					if err := os.WriteFile(target, previous, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				committed, tempSize := crashRun(t, src, target, withPrevious, p)

				data, err := os.ReadFile(target)
				var state string
				switch {
				case os.IsNotExist(err) && !withPrevious:
					state = "absent"
				case err != nil:
					t.Fatalf("target: %v", err)
				case withPrevious && bytes.Equal(data, previous):
					state = "previous, byte for byte"
				default:
					// Only the complete new archive may be there, and only once the
					// rename in Commit may have happened.
					if !committed {
						t.Fatalf("killed at %q, before Commit: the target holds %d bytes that are not the previous file", p, len(data))
					}
					if got := wtReadBack(t, target); !wtEqual(got, want) {
						t.Fatalf("the target holds %v, want the new archive %v", got, want)
					}
					state = "new archive, complete"
				}
				if committed && p.mark == "after Commit" && state != "new archive, complete" {
					t.Errorf("after Commit returned the target is %s", state)
				}
				var left []string
				for _, n := range testtools.DirNames(t, out) {
					if n == "out.tar" {
						continue
					}
					if !crashTempName.MatchString(n) {
						t.Errorf("left behind %q, which is not a temp file named like .out.tar.*.darc-tmp", n)
					}
					st, err := os.Stat(filepath.Join(out, n))
					if err != nil {
						t.Fatal(err)
					}
					left = append(left, fmt.Sprintf("%s (%d B)", n, st.Size()))
				}
				leftovers := "none"
				if len(left) > 0 {
					leftovers = strings.Join(left, ", ")
				}
				before := "none"
				if withPrevious {
					before = "previous"
				}
				table = append(table, row{p.String(), before, state, leftovers})
				t.Logf("killed at %q (temp file %d B then): target %s; left: %s", p, tempSize, state, leftovers)
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| kill point | before | target after SIGKILL | left in the directory |\n|---|---|---|---|\n")
	for _, r := range table {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.point, r.before, r.target, r.leftovers)
	}
	t.Logf("results:\n%s", b.String())
}

// crashRun runs the child until p and kills it there. It returns whether Commit may have run
// (the child was let go at or after "before Commit") and the temp file's size at the kill.
func crashRun(t *testing.T, src, target string, overwrite bool, p crashPoint) (committed bool, tempSize int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), crashEnvSrc+"="+src, crashEnvOut+"="+target, crashEnvCache+"="+t.TempDir(), "TMPDIR="+tmp)
	if overwrite {
		cmd.Env = append(cmd.Env, crashEnvOverwrite+"=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var output []string
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		output = append(output, line)
		point, ok := strings.CutPrefix(line, crashMark)
		if !ok {
			continue
		}
		if point == "before Commit" || point == "after Commit" {
			committed = p.race || point == "after Commit"
		}
		if point != p.mark {
			if _, err := io.WriteString(stdin, "\n"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if p.race {
			if _, err := io.WriteString(stdin, "\n"); err != nil {
				t.Fatal(err)
			}
			if p.delay > 0 {
				time.Sleep(p.delay)
			}
		}
		tempSize = crashTempSize(t, filepath.Dir(target))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed = true
		break
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child never reached %q: %v\n%s\n%s", p.mark, err, strings.Join(output, "\n"), stderr.String())
	}
	// A racing kill may come after the child finished on its own: it then waits at
	// "after Commit", or has exited.
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		if !p.race {
			t.Fatalf("the child was not killed: %v\n%s", err, stderr.String())
		}
	}
	// The child's spools are unlinked temp files; none may survive it.
	if names := testtools.DirNames(t, tmp); len(names) > 0 {
		t.Errorf("the child left %q in its TMPDIR", names)
	}
	return committed, tempSize
}

// crashTempSize is the size of the temp file in dir, or -1 when there is none.
func crashTempSize(t *testing.T, dir string) int64 {
	t.Helper()
	for _, n := range testtools.DirNames(t, dir) {
		if crashTempName.MatchString(n) {
			if st, err := os.Stat(filepath.Join(dir, n)); err == nil {
				return st.Size()
			}
		}
	}
	return -1
}
