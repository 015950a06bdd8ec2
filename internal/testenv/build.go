package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Programs are the module's three commands, by import path.
var Programs = []string{
	"github.com/tickerq/tickerq/worker",
	"github.com/tickerq/tickerq/producer",
	"github.com/tickerq/tickerq/quoteserver",
}

// BuildPrograms builds the named packages (default: Programs) into a new
// temporary directory and returns it; the caller removes it. It suits a
// TestMain, where there is no testing.TB yet.
func BuildPrograms(pkgs ...string) (dir string, err error) {
	if len(pkgs) == 0 {
		pkgs = Programs
	}
	dir, err = os.MkdirTemp("", "tickerq-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return dir, nil
}
