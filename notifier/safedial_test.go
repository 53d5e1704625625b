package notifier_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/takedown-eu/takedown/notifier"
)

func TestPublicAddr(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1",
		"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
		"224.0.0.1", "ff02::1", "255.255.255.255", "2002:a00:1::1",
	} {
		if notifier.PublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s counted as public", s)
		}
	}
	for _, s := range []string{"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"} {
		if !notifier.PublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s counted as not public", s)
		}
	}
}

// A resolver stub that answers a public-looking name with loopback: the
// rebinding case. The dialer must refuse before sending anything.
func TestSafeDialerRefusesBeforeConnecting(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	stub := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		switch host {
		case "provider.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "mapped.example":
			return []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	client := func(allow bool) *http.Client {
		d := &notifier.SafeDialer{AllowPrivate: allow, Resolve: stub}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	for _, url := range []string{
		"http://provider.example:" + port + "/", "http://mapped.example:" + port + "/",
		"http://127.0.0.1:" + port + "/", "http://[::1]:" + port + "/", "http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/", "http://[fe80::1]/", "http://0.0.0.0:" + port + "/", "http://[::ffff:127.0.0.1]:" + port + "/",
	} {
		_, err := client(false).Get(url)
		if !errors.Is(err, notifier.ErrForbiddenAddress) {
			t.Errorf("%s: got %v, want ErrForbiddenAddress", url, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the loopback server was reached %d times", hits.Load())
	}
	// Explicitly allowed (the demo and tests): it connects.
	resp, err := client(true).Get("http://provider.example:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("allowed request did not arrive")
	}
	if _, err := client(false).Get("http://nowhere.example/"); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("unresolvable: %v", err)
	}
}
