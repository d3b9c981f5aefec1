package main

import (
	"bytes"
	"fmt"
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
