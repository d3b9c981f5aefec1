package main

import (
	"bufio"
	"bytes"
	"errors"
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

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// saveTempName is how the writer names the temp file of a target called out.tar.
var saveTempName = regexp.MustCompile(`^\.out\.tar\.[0-9]+\.darc-tmp$`)

// TestSaveSIGKILL kills `darc save -o out.tar --overwrite` of five images from two archives
// with SIGKILL when the temp file appears, when it has grown past some sizes and when the
// target changes: the target is then absent, the previous file byte for byte, or the complete
// new archive, never a partial one, and anything else in the directory is the temp file.
// The points are found by polling, so a fast save may pass one; the log says what was hit.
func TestSaveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("writes an 8 MiB archive several times")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src.tar")
	var images []archivetest.Image
	for i := range 4 {
		images = append(images, archivetest.Image{
			Tags:   []string{fmt.Sprintf("example.com/kill/%d:1", i)},
			Layers: [][]byte{archivetest.Layer(int64(300+i), 1, 2<<20)},
		})
	}
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := archivetest.Build(f, images, archivetest.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	args := []string{"save", "-q", "--overwrite", "-o"}
	var sources []string
	for i := range 4 {
		sources = append(sources, fmt.Sprintf("docker-archive:%s:@%d", src, i))
	}
	sources = append(sources, "docker-archive:"+fixture("podman-save-m.tar")+":@2")
	previous, err := os.ReadFile(fixture("skopeo-copy.tar"))
	if err != nil {
		t.Fatal(err)
	}

	// kill reports whether to kill now, given the temp file's size (-1: none yet) and
	// whether the target differs from how it started.
	points := []struct {
		name string
		kill func(temp int64, targetChanged bool) bool
	}{
		{"temp file exists", func(temp int64, _ bool) bool { return temp >= 0 }},
		{"temp file > 1 MiB", func(temp int64, _ bool) bool { return temp > 1<<20 }},
		{"temp file > 4 MiB", func(temp int64, _ bool) bool { return temp > 4<<20 }},
		{"temp file > 8 MiB", func(temp int64, _ bool) bool { return temp > 8<<20 }},
		{"target changed", func(_ int64, changed bool) bool { return changed }},
	}
	var table strings.Builder
	for _, withPrevious := range []bool{false, true} {
		for _, p := range points {
			name := p.name
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
				cmd := exec.Command(os.Args[0], append(append(args, target), sources...)...)
				cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				hit := "finished first"
				var seen int64 = -1
			poll:
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("save failed: %v\n%s", err, stderr.String())
						}
						done <- nil
						break poll
					default:
					}
					temp, changed := saveTempSize(out), saveTargetChanged(target, withPrevious, previous)
					if p.kill(temp, changed) {
						_ = cmd.Process.Signal(syscall.SIGKILL)
						seen = temp
						hit = "killed"
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
				<-done

				state := "absent"
				data, err := os.ReadFile(target)
				switch {
				case os.IsNotExist(err) && !withPrevious:
				case err != nil:
					t.Fatalf("target: %v", err)
				case withPrevious && bytes.Equal(data, previous):
					state = "previous, byte for byte"
				default:
					if _, errOut, err := run(t, "verify", target); err != nil {
						t.Fatalf("the target (%d bytes) is neither absent, the previous file nor a good archive: %v\n%s", len(data), err, errOut)
					}
					if got := lsTags(t, target); len(got) != 5 {
						t.Fatalf("the target lists %q, want 5 images", got)
					}
					state = "new archive, complete"
				}
				var left []string
				for _, n := range testtools.DirNames(t, out) {
					if n == "out.tar" {
						continue
					}
					if !saveTempName.MatchString(n) {
						t.Errorf("left behind %q, which is not a temp file named like .out.tar.*.darc-tmp", n)
					}
					left = append(left, n)
				}
				leftovers := "none"
				if len(left) > 0 {
					leftovers = strings.Join(left, ", ")
				}
				if hit == "killed" {
					hit = fmt.Sprintf("killed (temp file %d B)", seen)
				}
				fmt.Fprintf(&table, "| %s | %s | %s | %s |\n", name, hit, state, leftovers)
			})
		}
	}
	t.Logf("results:\n| kill point | what happened | target | left in the directory |\n|---|---|---|---|\n%s", table.String())
}

// saveTempSize is the size of the temp file in dir, or -1 when there is none.
func saveTempSize(dir string) int64 {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if saveTempName.MatchString(e.Name()) {
			if info, err := e.Info(); err == nil {
				return info.Size()
			}
		}
	}
	return -1
}

// saveTargetChanged reports whether target is no longer as it started.
func saveTargetChanged(target string, withPrevious bool, previous []byte) bool {
	st, err := os.Stat(target)
	if err != nil {
		return withPrevious
	}
	return !withPrevious || st.Size() != int64(len(previous))
}

// TestInterruptBeforeRename sends SIGINT or SIGTERM to `darc save` at the moment its temp
// file is complete, just before the rename (the test hook pauses there): the commit is
// abandoned, the target is absent or the previous file byte for byte, no temp file is left,
// and the exit status is 128 plus the signal's number.
func TestInterruptBeforeRename(t *testing.T) {
	previous, err := os.ReadFile(fixture("skopeo-copy.tar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		for _, withPrevious := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v, previous file %v", tc.sig, withPrevious), func(t *testing.T) {
				out := t.TempDir()
				target := filepath.Join(out, "out.tar")
				if withPrevious {
					if err := os.WriteFile(target, previous, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmd := exec.Command(os.Args[0], "save", "-q", "--overwrite", "-o", target, "docker-archive:"+fixture("podman-save-m.tar")+":@0")
				cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1", pauseBeforeRenameEnv+"=1")
				stderr, err := cmd.StderrPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				var rest strings.Builder
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if sc.Text() == pausedBeforeRename {
						if temp := saveTempSize(out); temp <= 0 {
							t.Errorf("paused before the rename, but the temp file has size %d", temp)
						}
						_ = cmd.Process.Signal(tc.sig)
						break
					}
					fmt.Fprintln(&rest, sc.Text())
				}
				_, _ = io.Copy(&rest, stderr)
				err = cmd.Wait()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
					t.Fatalf("exit: %v, want status %d\n%s", err, tc.code, rest.String())
				}
				if !strings.Contains(rest.String(), "nothing was written to "+target) {
					t.Errorf("stderr does not say nothing was written:\n%s", rest.String())
				}
				data, err := os.ReadFile(target)
				switch {
				case !withPrevious && !os.IsNotExist(err):
					t.Errorf("target: %v, want it absent", err)
				case withPrevious && (err != nil || !bytes.Equal(data, previous)):
					t.Errorf("target: %v, want the previous file byte for byte", err)
				}
				for _, n := range testtools.DirNames(t, out) {
					if n != "out.tar" {
						t.Errorf("left behind %q", n)
					}
				}
			})
		}
	}
}

// TestInterruptedLoadSaysWhatWasLoaded interrupts `darc load` of four images into an OCI
// layout once the first is done: the exit status is 130 and the report names as copied
// exactly the images whose "done" line was printed, the others as not copied.
func TestInterruptedLoadSaysWhatWasLoaded(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 16 MiB of layers")
	}
	src := filepath.Join(t.TempDir(), "src.tar")
	var images []archivetest.Image
	for i := range 4 {
		images = append(images, archivetest.Image{
			Tags:   []string{fmt.Sprintf("example.com/int/%d:1", i)},
			Layers: [][]byte{archivetest.Layer(int64(500+i), 2, 2<<20)},
		})
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := "oci:" + filepath.Join(t.TempDir(), "layout")
	cmd := exec.Command(os.Args[0], "load", "-p", "1", src, dest)
	cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(stderr)
	signalled := false
	for sc.Scan() {
		fmt.Fprintln(&all, sc.Text())
		if strings.HasPrefix(sc.Text(), "done") && !signalled {
			_ = cmd.Process.Signal(syscall.SIGINT)
			signalled = true
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("exit: %v, want status 130\n%s", err, all.String())
	}
	var done []string
	for i := range 4 {
		if strings.Contains(all.String(), fmt.Sprintf("done    %s:@%d\n", src, i)) {
			done = append(done, fmt.Sprintf("@%d", i))
		}
	}
	want := "copied to " + dest + ": " + strings.Join(done, ", ")
	if !strings.Contains(all.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, all.String())
	}
	if len(done) < 4 && !strings.Contains(all.String(), "; not copied: ") {
		t.Errorf("stderr does not say which images were not copied:\n%s", all.String())
	}
	t.Logf("%s", all.String())
}
