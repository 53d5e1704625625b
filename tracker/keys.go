package tracker

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// keys names the Redis keys of one shard.
type keys struct{ prefix string }

func shardKeys(shard int) keys { return keys{prefix: "td:{" + strconv.Itoa(shard) + "}:"} }

func (k keys) notice(id string) string { return k.prefix + "n:" + id }

// allNotices matches every shard's notice hashes (braces are not special
// in Redis's patterns); noticeID is the id in such a key.
const allNotices = "td:{*}:n:*"

func noticeID(key string) string                 { return key[strings.Index(key, "}:n:")+len("}:n:"):] }
func (k keys) due() string                       { return k.prefix + "due" }
func (k keys) deadline() string                  { return k.prefix + "deadline" }
func (k keys) outbox() string                    { return k.prefix + "outbox" }
func (k keys) counts() string                    { return k.prefix + "counts" }
func (k keys) overdue() string                   { return k.prefix + "overdue" }
func (k keys) claims() string                    { return k.prefix + "claims" }
func (k keys) relay() string                     { return k.prefix + "relay" }
func (k keys) attempts(id string) string         { return k.prefix + "a:" + id }
func (k keys) timeline(id string) string         { return k.prefix + "t:" + id }
func (k keys) body(id string) string             { return k.prefix + "b:" + id }
func (k keys) byIssuer(issuer string) string     { return k.prefix + "by:issuer:" + issuer }
func (k keys) byProvider(provider string) string { return k.prefix + "by:provider:" + provider }

// transition is the KEYS list every transition script takes (see
// scripts/prelude.lua).
func (k keys) transition(id string) []string {
	return []string{k.notice(id), k.due(), k.deadline(), k.outbox(), k.counts(), k.overdue(), k.claims(), k.attempts(id), k.timeline(id), k.body(id)}
}

// ShardOf maps a notice id to its shard. Ids are UUIDs, so their leading
// bytes are uniformly spread.
func ShardOf(id string, shards int) int {
	u, err := uuid.Parse(id)
	if err != nil {
		// Not a notice id: still map it deterministically so lookups of
		// bad ids fail as "not found" rather than panic.
		var h uint32
		for i := 0; i < len(id); i++ {
			h = h*31 + uint32(id[i])
		}
		return int(h % uint32(shards))
	}
	return int(binary.BigEndian.Uint32(u[:4]) % uint32(shards))
}

// TransitionKeys lists the keys a transition script of notice id touches.
// Exported for tests that prove they share one cluster slot.
func TransitionKeys(id string, shards int) []string {
	return shardKeys(ShardOf(id, shards)).transition(id)
}
