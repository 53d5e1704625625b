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
	// Relay lease scripts.
	renew, release *redis.Script
}

func loadScripts() scripts {
	prelude := mustRead("prelude.lua")
	withPrelude := func(name string) *redis.Script { return redis.NewScript(withHelpers(prelude, mustRead(name))) }
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

// withHelpers returns body preceded by the prelude's paragraphs (parts
// separated by a blank line) that define no helper — the header, the
// KEYS and ARGV locals — and by those that define a helper body calls,
// directly or through another helper, in the prelude's order. Every
// helper defined is a closure built anew on each call of the script;
// leaving out the unused ones saves create.lua, which calls one of
// thirteen, some 19,000 of the 40,000 instructions a call costs before
// its first command.
func withHelpers(prelude, body string) string {
	paras := strings.Split(prelude, "\n\n")
	defines := make([][]string, len(paras))
	calls := map[string]*regexp.Regexp{}
	for i, p := range paras {
		for _, m := range definesRE.FindAllStringSubmatch(p, -1) {
			defines[i] = append(defines[i], m[1])
			calls[m[1]] = regexp.MustCompile(`(^|[^\w.:])` + m[1] + `\(`)
		}
	}
	needed := map[string]bool{}
	var need func(text string)
	need = func(text string) {
		for name, re := range calls {
			if !needed[name] && re.MatchString(text) {
				needed[name] = true
				for i, names := range defines {
					if slices.Contains(names, name) {
						need(commentRE.ReplaceAllString(paras[i], ""))
					}
				}
			}
		}
	}
	need(commentRE.ReplaceAllString(body, ""))
	var out []string
	for i, p := range paras {
		if len(defines[i]) == 0 || slices.ContainsFunc(defines[i], func(n string) bool { return needed[n] }) {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n\n") + "\n" + body
}
