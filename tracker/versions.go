package tracker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Versions calls fn with the id and version of every notice the tracker
// holds, in no particular order; fn is not called concurrently. It scans
// the keyspace (on each master of a cluster), a few hundred keys per
// round trip, so it reads a consistent version of each notice but not a
// snapshot of all of them: notices created or changed while it runs may
// or may not be seen, and at either version.
func (s *Store) Versions(ctx context.Context, fn func(id string, version int64) error) error {
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, allNotices, 500).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			cmds := make([]*redis.StringCmd, len(batch))
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, k := range batch {
					cmds[i] = p.HGet(ctx, k, "v")
				}
				return nil
			})
			if err != nil && err != redis.Nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for i, k := range batch {
				v, err := cmds[i].Int64()
				if err == redis.Nil {
					continue // removed since the scan saw it
				}
				if err != nil {
					return fmt.Errorf("%s: version: %w", k, err)
				}
				if err := fn(noticeID(k), v); err != nil {
					return err
				}
			}
			batch = batch[:0]
			return nil
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("a %T cannot be scanned", s.rdb)
	}
	if err != nil {
		return fmt.Errorf("versions: %w", err)
	}
	return nil
}

// CreatedAt reads when each of ids was created, a few hundred per round
// trip; ids the tracker does not hold are left out.
func (s *Store) CreatedAt(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(start+500, len(ids))]
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				cmds[i] = p.HGet(ctx, s.keysFor(id).notice(id), "created")
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return nil, fmt.Errorf("created: %w", err)
		}
		for i, id := range batch {
			ms, err := cmds[i].Int64()
			if err == redis.Nil {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("created %s: %w", id, err)
			}
			out[id] = time.UnixMilli(ms).UTC()
		}
	}
	return out, nil
}
