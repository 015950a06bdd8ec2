package queue

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tickerq/tickerq/tasks"
)

func TestReadSymbols(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("A", MaxLineLen)
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring; "" means no error
	}{
		{name: "empty", in: "", want: nil},
		{name: "one without newline", in: "GOOG", want: []string{"GOOG"}},
		{name: "trims and keeps case", in: "  goog \n\tBRK.B\t\n", want: []string{"goog", "BRK.B"}},
		{name: "blank lines and comments", in: "\n# watch list\nGOOG\n\n   # indented comment\nMSFT\n   \n", want: []string{"GOOG", "MSFT"}},
		{name: "crlf", in: "GOOG\r\nMSFT\r\n", want: []string{"GOOG", "MSFT"}},
		{name: "byte-order mark", in: "\uFEFFGOOG\nMSFT\n", want: []string{"GOOG", "MSFT"}},
		{name: "keeps invalid and duplicate for Validate", in: "BAD$\nx y\nGOOG\nGOOG\n", want: []string{"BAD$", "x y", "GOOG", "GOOG"}},
		{name: "longest line allowed", in: "GOOG\n" + long + "\r\n", want: []string{"GOOG", long}},
		{name: "line one byte too long", in: "GOOG\n#\n" + long + "B\nMSFT\n", wantErr: "line 3: line too long"},
		{name: "huge line", in: "GOOG\n" + strings.Repeat("x", 1<<20), wantErr: "line 2: line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadSymbols(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("ReadSymbols() error = %v, want ErrLineTooLong containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadSymbols() error = %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ReadSymbols() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadSymbolsReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("GOOG\n"), iotest.ErrReader(boom))
	if _, err := ReadSymbols(r); !errors.Is(err, boom) || errors.Is(err, ErrLineTooLong) {
		t.Fatalf("ReadSymbols() error = %v, want it to wrap %v", err, boom)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantBad []string
		wantMsg string
	}{
		{name: "none", in: nil, want: []string{}},
		{name: "normalizes in order", in: []string{"goog", "BRK.B", "rds-a", "goog"}, want: []string{"GOOG", "BRK.B", "RDS-A", "GOOG"}},
		{name: "one bad", in: []string{"GOOG", "BAD$"}, wantBad: []string{"BAD$"}, wantMsg: `invalid symbol "BAD$": ` + tasks.SymbolRule},
		{
			name:    "names every bad one once, in order",
			in:      []string{"BAD$", "GOOG", "x y", "BAD$", "", "-X", "TOOLONGSYMBOL1234", "msft"},
			wantBad: []string{"BAD$", "x y", "", "-X", "TOOLONGSYMBOL1234"},
			wantMsg: `invalid symbols "BAD$", "x y", "", "-X", "TOOLONGSYMBOL1234": ` + tasks.SymbolRule,
		},
		{name: "quotes each", in: []string{"A,B", "TAB\tX", `Q"`, "AA PL"}, wantBad: []string{"A,B", "TAB\tX", `Q"`, "AA PL"}, wantMsg: `invalid symbols "A,B", "TAB\tX", "Q\"", "AA PL": ` + tasks.SymbolRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Validate(tt.in)
			if tt.wantBad == nil {
				if err != nil {
					t.Fatalf("Validate() error = %v", err)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("Validate() = %q, want %q", got, tt.want)
				}
				return
			}
			var inv *InvalidSymbolsError
			if !errors.As(err, &inv) {
				t.Fatalf("Validate() error = %v, want *InvalidSymbolsError", err)
			}
			if got != nil {
				t.Errorf("Validate() = %q with an error, want nil", got)
			}
			if !slices.Equal(inv.Symbols, tt.wantBad) {
				t.Errorf("bad symbols = %q, want %q", inv.Symbols, tt.wantBad)
			}
			if !errors.Is(err, tasks.ErrInvalidSymbol) {
				t.Errorf("error %v does not match tasks.ErrInvalidSymbol", err)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("message = %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
}
