package tracker

import (
	"embed"
	"regexp"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua
var scriptFS embed.FS

// scripts holds one loaded script per transition.
type scripts struct {
	create, deliver, attempt, acknowledge, remove, block, resume, decline, withdraw, fail, replay, followup, claim *redis.Script
	// restore writes a notice rebuilt from its events.
	restore *redis.Script
	// Relay lease scripts.
	renew, release *redis.Script
}

func loadScripts() scripts {
	prelude := parsePrelude(mustRead("prelude.lua"))
	withPrelude := func(name string) *redis.Script { return redis.NewScript(prelude.with(mustRead(name))) }
	return scripts{
		create:      withPrelude("create.lua"),
		deliver:     withPrelude("deliver.lua"),
		attempt:     withPrelude("attempt.lua"),
		acknowledge: withPrelude("acknowledge.lua"),
		remove:      withPrelude("remove.lua"),
		block:       withPrelude("block.lua"),
		resume:      withPrelude("resume.lua"),
		decline:     withPrelude("decline.lua"),
		withdraw:    withPrelude("withdraw.lua"),
		fail:        withPrelude("fail.lua"),
		replay:      withPrelude("replay.lua"),
		followup:    withPrelude("followup.lua"),
		restore:     withPrelude("restore.lua"),
		claim:       redis.NewScript(mustRead("claim.lua")),
		renew:       redis.NewScript(mustRead("lease_renew.lua")),
		release:     redis.NewScript(mustRead("lease_release.lua")),
	}
}

func mustRead(name string) string {
	b, err := scriptFS.ReadFile("scripts/" + name)
	if err != nil {
		panic("tracker: embedded script missing: " + name) // a build defect, not a runtime condition
	}
	return string(b)
}

// commentRE finds Lua line comments, which may name a helper without
// calling it.
var commentRE = regexp.MustCompile(`--[^\n]*`)

// definesRE finds the helpers a paragraph of the prelude defines.
var definesRE = regexp.MustCompile(`(?m)^local function (\w+)`)

// callRE finds a call of the helper name in Lua code (not of a method or
// table field of the same name).
func callRE(name string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^\w.:])` + regexp.QuoteMeta(name) + `\(`)
}

// prelude is prelude.lua split into paragraphs (parts separated by a
// blank line), with the helpers each defines.
type prelude struct {
	paras   []string
	defines [][]string
	calls   map[string]*regexp.Regexp
}

func parsePrelude(src string) prelude {
	p := prelude{paras: strings.Split(src, "\n\n"), calls: map[string]*regexp.Regexp{}}
	p.defines = make([][]string, len(p.paras))
	for i, para := range p.paras {
		for _, m := range definesRE.FindAllStringSubmatch(para, -1) {
			p.defines[i] = append(p.defines[i], m[1])
			p.calls[m[1]] = callRE(m[1])
		}
	}
	return p
}

// with returns body preceded by the paragraphs that define no helper —
// the header, the KEYS and ARGV locals — and by those that define a
// helper body calls, directly or through another helper, in the
// prelude's order. Every helper defined is a closure built anew on each
// call of the script; leaving out the unused ones saves create.lua,
// which calls one of thirteen, some 19,000 of the 40,000 instructions a
// call costs before its first command.
func (p prelude) with(body string) string {
	needed := map[string]bool{}
	var need func(code string)
	need = func(code string) {
		code = commentRE.ReplaceAllString(code, "")
		for name, re := range p.calls {
			if needed[name] || !re.MatchString(code) {
				continue
			}
			needed[name] = true
			for i, names := range p.defines {
				if slices.Contains(names, name) {
					need(p.paras[i])
				}
			}
		}
	}
	need(body)
	var out []string
	for i, para := range p.paras {
		if len(p.defines[i]) == 0 || slices.ContainsFunc(p.defines[i], func(n string) bool { return needed[n] }) {
			out = append(out, para)
		}
	}
	return strings.Join(out, "\n\n") + "\n" + body
}
