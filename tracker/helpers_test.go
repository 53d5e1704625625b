package tracker

import (
	"slices"
	"strings"
	"testing"
)

// A script gets the prelude's shared part and the helpers it calls,
// directly or through another helper, in the prelude's order; not the
// others, and not those only named in a comment.
func TestWithHelpers(t *testing.T) {
	prelude := strings.Join([]string{
		"-- header\nlocal N = KEYS[1]",
		"local function a() return 1 end",
		"-- b calls a.\nlocal function b() return a() end",
		"local function c() return 3 end",
		"local function d() return 4 end\nlocal function e() return 5 end",
	}, "\n\n")
	for _, tc := range []struct {
		body string
		want []string
	}{
		{"return b()", []string{"a", "b"}},
		{"return c() + x.d() + y:e()", []string{"c"}},
		{"-- as c() would\nreturn 1", nil},
		{"local v = e()", []string{"d", "e"}},
		{"return 1", nil},
	} {
		src := withHelpers(prelude, tc.body)
		if !strings.HasPrefix(src, "-- header\nlocal N = KEYS[1]") || !strings.HasSuffix(src, "\n"+tc.body) {
			t.Errorf("%q: the shared part or the body is missing:\n%s", tc.body, src)
		}
		if got := defined(src); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: helpers %v, want %v", tc.body, got, tc.want)
		}
	}
}

// Every helper the real scripts call is defined before the script's own
// code, and create.lua, the first transition of every notice, builds
// only the one it calls.
func TestScriptsDefineWhatTheyCall(t *testing.T) {
	prelude := mustRead("prelude.lua")
	all := defined(prelude)
	entries, err := scriptFS.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		body := mustRead(e.Name())
		if e.Name() == "prelude.lua" || !strings.Contains(body, "KEYS: see prelude") {
			continue
		}
		have := defined(withHelpers(prelude, body))
		for _, name := range all {
			if callRE(name).MatchString(commentRE.ReplaceAllString(body, "")) && !slices.Contains(have, name) {
				t.Errorf("%s calls %s but does not get it", e.Name(), name)
			}
		}
	}
	if got := defined(withHelpers(prelude, mustRead("create.lua"))); strings.Join(got, " ") != "record" {
		t.Errorf("create.lua defines %v, want only record", got)
	}
}

func defined(src string) []string {
	var names []string
	for _, m := range definesRE.FindAllStringSubmatch(src, -1) {
		names = append(names, m[1])
	}
	return names
}

func withHelpers(prelude, body string) string { return parsePrelude(prelude).with(body) }
