// Package tracker keeps each notice's current state in Redis, the source of
// truth, and indexes it against its deadline.
//
// Keys are sharded with hash tags so that every script touches one slot and
// the same code runs on a single Redis and on Redis Cluster:
//
//	td:{<shard>}:n:<id>     hash: the notice's fields and state
//	td:{<shard>}:due        zset: next follow-up time per notice (ms)
//	td:{<shard>}:deadline   zset: running deadlines (ms)
//	td:{<shard>}:outbox     stream: events waiting for the relay
//	td:{<shard>}:counts     hash: notices per state
//	td:{<shard>}:overdue    hash: overdue notices per provider
//	td:{<shard>}:claims     hash: scheduler claim token per notice
//	td:{<shard>}:relay      string: relay lease for this shard
//	td:{<shard>}:b:<id>     string: the notice's JSON (apart, so the hash stays compact)
//	td:{<shard>}:a:<id>     list: the notice's latest delivery attempts
//	td:{<shard>}:t:<id>     list: the notice's events, for reads
//	td:{<shard>}:by:…       zsets: listing indexes by issuer and by provider
//	td:{endpoints}:disabled hash: webhook endpoints turned off (410 Gone)
//
// Every transition is one Lua script (scripts/*.lua, with a shared
// prelude) that checks the current state, writes the change, moves the
// index entries, bumps the counters and appends the event to the shard's
// outbox in one atomic step.
//
//	st, _ := tracker.New(rdb, tracker.Config{Shards: 16})
//	res, err := st.Create(ctx, notice, now, firstFollowUp)
//	if errors.Is(err, pipeline.ErrConflict) { ... }
package tracker
