package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// ErrForbiddenAddress reports an outbound connection refused because its
// address is loopback, private, link-local or otherwise not public.
var ErrForbiddenAddress = errors.New("outbound address is not public")

// blocked are the special-purpose ranges outbound requests never reach
// unless a provider is explicitly allowed private addresses.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may map to private IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed private IPv4
	netip.MustParsePrefix("2001::/32"),       // Teredo
}

// PublicAddr reports whether a may be the target of an outbound request.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Resolver looks a host name up. net.DefaultResolver.LookupNetIP fits.
type Resolver func(ctx context.Context, network, host string) ([]netip.Addr, error)

// SafeDialer dials only public addresses unless AllowPrivate is set. It
// resolves the name itself and checks the very address it connects to, and
// checks again in the socket's Control hook, so a name that resolves to a
// public address when checked and to a private one when used (DNS
// rebinding) cannot pass.
type SafeDialer struct {
	AllowPrivate bool
	Resolve      Resolver
	Timeout      time.Duration
}

// DialContext is an http.Transport DialContext.
func (d *SafeDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	resolve := d.Resolve
	if resolve == nil {
		resolve = net.DefaultResolver.LookupNetIP
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = resolve(ctx, "ip", host); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: d.Timeout, Control: d.control}
	var firstErr error
	for _, a := range addrs {
		if !d.AllowPrivate && !PublicAddr(a) {
			if firstErr == nil {
				firstErr = fmt.Errorf("dial %s (%s): %w", host, a, ErrForbiddenAddress)
			}
			continue
		}
		conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("dial %s: no addresses", host)
	}
	return nil, firstErr
}

// control runs on the socket just before connect, with the final address.
func (d *SafeDialer) control(_, address string, _ syscall.RawConn) error {
	if d.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		host, port, _ := net.SplitHostPort(address)
		a, perr := netip.ParseAddr(host)
		if perr != nil {
			return fmt.Errorf("connect %s: %w", address, ErrForbiddenAddress)
		}
		p, _ := strconv.Atoi(port)
		ap = netip.AddrPortFrom(a, uint16(p))
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("connect %s: %w", address, ErrForbiddenAddress)
	}
	return nil
}
