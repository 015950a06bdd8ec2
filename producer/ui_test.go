package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/tickerq/tickerq/internal/cli"
)

func TestCheckExposure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr           string
		auth, insecure bool
		refused        bool
	}{
		{addr: "127.0.0.1:8080"},
		{addr: "127.3.4.5:8080"},
		{addr: "[::1]:8080"},
		{addr: "localhost:8080"},
		{addr: "LocalHost:0"},
		{addr: "0.0.0.0:8080", refused: true},
		{addr: "[::]:8080", refused: true},
		{addr: ":8080", refused: true},
		{addr: "192.168.1.10:8080", refused: true},
		{addr: "ui.example.com:8080", refused: true},
		{addr: "0.0.0.0:8080", auth: true},
		{addr: ":8080", auth: true},
		{addr: "0.0.0.0:8080", insecure: true},
		{addr: "10.0.0.1:8080", insecure: true},
	}
	for _, tt := range tests {
		err := checkExposure(tt.addr, tt.auth, tt.insecure)
		if refused := err != nil; refused != tt.refused {
			t.Errorf("checkExposure(%q, auth %v, insecure %v) = %v, want refused %v", tt.addr, tt.auth, tt.insecure, err, tt.refused)
			continue
		}
		if err == nil {
			continue
		}
		if usage := (*cli.UsageError)(nil); !errors.As(err, &usage) {
			t.Errorf("checkExposure(%q) = %v, want a usage error (exit 2)", tt.addr, err)
		}
		for _, want := range []string{tt.addr, "UI_USER", "UI_PASSWORD", "--insecure-no-auth"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("checkExposure(%q) = %q, does not say %q", tt.addr, err, want)
			}
		}
	}
}
