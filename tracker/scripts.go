package tracker

import (
	"embed"

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
	withPrelude := func(name string) *redis.Script { return redis.NewScript(prelude + "\n" + mustRead(name)) }
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
