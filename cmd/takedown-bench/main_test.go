package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Flags a run cannot use are refused before anything starts, with the
// flag and what it takes.
func TestRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-only", "e2e,warp"}, `-only: unknown part "warp"`},
		{[]string{"-duplicate-window", "5s"}, "-duplicate-window: 5s (want 1m0s to 24h0m0s"},
		{[]string{"-redis-appendfsync", "sometimes"}, `-redis-appendfsync: "sometimes" (want everysec, always or no)`},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), c.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: printed %q before refusing", c.args, stdout.String())
		}
	}
}
