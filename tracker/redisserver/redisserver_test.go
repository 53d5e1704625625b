package redisserver_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/takedown-eu/takedown/tracker/redisserver"
)

func TestStartRestartKeepsDataStop(t *testing.T) {
	ctx := context.Background()
	srv, err := redisserver.Start(ctx, redisserver.Options{Dir: t.TempDir(), AppendFsync: "always"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Kill() // a crash: the AOF must keep the write
	if redisserver.Reachable(srv.Addr()) {
		t.Fatal("still reachable after kill")
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after restart: %q %v", v, err)
	}
	policy, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil || policy["maxmemory-policy"] != "noeviction" {
		t.Errorf("maxmemory-policy %v %v", policy, err)
	}
	srv.Stop()
	srv.Stop() // twice is fine
	if redisserver.Reachable(srv.Addr()) {
		t.Fatal("reachable after stop")
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := redisserver.Start(context.Background(), redisserver.Options{Binary: "no-such-redis-server", Dir: t.TempDir()})
	if !errors.Is(err, redisserver.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}
