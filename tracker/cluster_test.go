package tracker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/internal/testenv"
	"github.com/takedown-eu/takedown/pipeline"
	"github.com/takedown-eu/takedown/tracker"
	"github.com/takedown-eu/takedown/tracker/redisserver"
)

// TestScriptsRunOnRedisCluster runs transitions through a cluster client
// against a cluster-mode redis-server, which refuses any script whose keys
// span slots, and checks with CLUSTER KEYSLOT that every key one script
// touches hashes to the same slot.
func TestScriptsRunOnRedisCluster(t *testing.T) {
	ctx := context.Background()
	srv, err := redisserver.Start(ctx, redisserver.Options{Dir: t.TempDir(), AppendFsync: "no",
		Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "cluster state ok", func() bool {
		info, _ := admin.ClusterInfo(ctx).Result()
		return strings.Contains(info, "cluster_state:ok")
	})

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}})
	defer cc.Close()
	st, err := tracker.New(cc, tracker.Config{Shards: 16})
	if err != nil {
		t.Fatal(err)
	}

	for shard := range 16 {
		var ids []string
		for i := 0; len(ids) == 0; i++ { // find a notice id on this shard
			id := pipeline.NoticeID("de-bka", "probe-"+string(rune('a'+shard))+"-"+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
			if tracker.ShardOf(id, 16) == shard {
				ids = append(ids, id)
			}
		}
		for _, key := range tracker.TransitionKeys(ids[0], 16) {
			slot, err := admin.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			first, _ := admin.ClusterKeySlot(ctx, tracker.TransitionKeys(ids[0], 16)[0]).Result()
			if slot != first {
				t.Fatalf("shard %d: key %s in slot %d, want %d", shard, key, slot, first)
			}
		}
	}

	// A whole lifecycle through the cluster client: Redis Cluster would
	// answer CROSSSLOT to any script that broke the rule.
	for i := range 20 {
		n := testenv.Notice("de-bka", "CL-"+string(rune('a'+i)), "videohost", pipeline.KindRemovalOrder)
		if _, err := st.Create(ctx, &n, testenv.JSON(n), t0, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Delivered(ctx, n.ID(), t0, time.Hour, t0.Add(time.Minute), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ApplyFeedback(ctx, fb(n.ID(), "videohost", pipeline.FeedbackRemoved), "m1", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for shard := range 16 {
		if _, err := st.Claim(ctx, shard, t0.Add(time.Hour), t0.Add(2*time.Hour), 10, "tok"); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.AcquireShard(ctx, shard, "relay-1", time.Second); err != nil || !ok {
			t.Fatalf("lease shard %d: %v %v", shard, ok, err)
		}
	}
	c, err := st.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.ByState[pipeline.StateRemoved] != 20 || c.Outbox != 60 {
		t.Fatalf("counts on cluster: %+v", c)
	}
	versions := map[string]int64{}
	if err := st.Versions(ctx, func(id string, v int64) error { versions[id] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(versions) != 20 {
		t.Fatalf("versions on cluster: %d notices, want 20", len(versions))
	}
	for id, v := range versions {
		if v != 3 {
			t.Errorf("notice %s at version %d on cluster, want 3", id, v)
		}
	}

	// A notice lost from the cluster comes back from its events.
	n := testenv.Notice("de-bka", "CL-a", "videohost", pipeline.KindRemovalOrder)
	events := outboxEvents(t, st, n.ID())
	if err := cc.Del(ctx, tracker.TransitionKeys(n.ID(), 16)[0]).Err(); err != nil {
		t.Fatal(err)
	}
	rb, err := tracker.Rebuild(events)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Restore(ctx, rb, 0, t0.Add(time.Hour)); err != nil {
		t.Fatalf("restore on cluster: %v", err)
	}
	if rec, err := st.Get(ctx, n.ID()); err != nil || rec.Version != 3 || rec.State != pipeline.StateRemoved {
		t.Errorf("restored on cluster: %+v, %v", rec, err)
	}
}
