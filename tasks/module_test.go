package tasks_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// otherProgram is a program of another module that runs the quote-fetch
// handler with a fetcher and a store of its own. It compiles only if the
// handler's interfaces name nothing under tickerq's internal/.
const otherProgram = `package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hibiken/asynq"
	"github.com/tickerq/tickerq/tasks"
)

type fetcher struct{}

func (fetcher) Quote(_ context.Context, symbol string) (tasks.Quote, error) {
	if symbol == "NOPE" {
		return tasks.Quote{}, tasks.ErrUnknownSymbol
	}
	return tasks.Quote{Symbol: symbol, Price: json.Number("1.5"), QuotedAt: time.Now()}, nil
}

type store struct{}

func (store) SavePrice(_ context.Context, _ string, q tasks.Quote) (bool, error) {
	if q.Price == "0" {
		return false, tasks.ErrRejected
	}
	return true, nil
}

func main() {
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeQuoteFetch, tasks.NewQuoteFetchHandler(fetcher{}, store{}))
	_ = asynq.Config{IsFailure: tasks.IsFailure, RetryDelayFunc: tasks.RetryDelay}
	_ = tasks.Classify(&tasks.StatusError{Code: 429})
}
`

// TestUsableFromAnotherModule builds otherProgram in a module of its own
// that requires tickerq (replaced by this checkout).
func TestUsableFromAnotherModule(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a module")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goMod := "module example.com/other\n\ngo 1.26.0\n\nrequire github.com/tickerq/tickerq v0.0.0\n\nreplace github.com/tickerq/tickerq => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"go.mod":  []byte(goMod),
		"go.sum":  sum,
		"main.go": []byte(otherProgram),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in another module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
