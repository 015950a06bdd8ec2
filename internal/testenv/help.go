package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// HelpPrograms builds the programs for a test that reads their --help
// (skipped under -short), and returns a function that runs
// "PROGRAM [SUBCOMMAND...] --help" for a key such as "producer ui" and
// returns what it printed. It runs in an environment holding only PATH
// and HOME, so that the help shows the built-in defaults.
func HelpPrograms(t *testing.T) (help func(t *testing.T, key string) string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the programs")
	}
	bin, err := BuildPrograms()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(bin) })
	return func(t *testing.T, key string) string {
		t.Helper()
		words := strings.Fields(key)
		cmd := exec.Command(filepath.Join(bin, words[0]), append(words[1:], "--help")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", key, err, out)
		}
		return string(out)
	}
}
