package cluster

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/streamhub/streamhub/internal/conf"
)

// Roles a node may have (Config.Role).
const (
	// RoleStandalone is one node on its own: no live map, no pulls. The
	// default; the node behaves exactly as without a cluster section.
	RoleStandalone = "standalone"
	// RoleOrigin takes publishers and registers each path it publishes in
	// the live map, so that no other origin takes a second publisher of it.
	RoleOrigin = "origin"
	// RoleEdge serves viewers: a path it does not have is looked up in the
	// live map (or the static origin list) and pulled from its origin.
	RoleEdge = "edge"
)

// Config is the cluster section.
type Config struct {
	// Role is standalone, origin or edge.
	Role string `yaml:"role"`
	// Node names this node in the live map and in the logs of the others;
	// "" takes the host name.
	Node string `yaml:"node"`
	// Redis is the live map's server: HOST:PORT or redis://[:PASSWORD@]HOST:PORT[/DB];
	// "" for none (an edge then needs Origins).
	Redis string `yaml:"redis"`
	// RedisTimeout bounds every Redis call: a slow Redis never holds up a
	// publisher for longer.
	RedisTimeout time.Duration `yaml:"redisTimeout"`
	// RelayAddress is this node's RTMP address as the other nodes reach it
	// (HOST:PORT): what an origin writes into the map.
	RelayAddress string `yaml:"relayAddress"`
	// Secret is shared by every node: edges sign their pulls with it, and
	// an origin lets in as relays only readers that do.
	Secret string `yaml:"secret"`
	// Origins is a static list of the RTMP addresses (HOST:PORT) an edge
	// pulls from when it has no Redis, tried in order; an edge of an edge
	// lists the edge above it.
	Origins []string `yaml:"origins"`
	// AllowedRelays are the networks (CIDR, or a literal HOST:PORT) that a
	// map entry may point an edge at: an entry elsewhere is ignored.
	AllowedRelays []string `yaml:"allowedRelays"`
	// TTL is how long an origin's entry lives unless refreshed: a crashed
	// origin's paths are free again after it. Refresh is how often a live
	// origin refreshes its entries.
	TTL     time.Duration `yaml:"ttl"`
	Refresh time.Duration `yaml:"refresh"`
	// IdleTimeout stops an edge's pull once the path has had no reader for
	// this long.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// NegativeTTL is how long an edge remembers that no origin has a path.
	NegativeTTL time.Duration `yaml:"negativeTTL"`
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate returns the problems of the section at prefix ("cluster"), each
// naming its key.
func (c *Config) Validate(prefix string) []error {
	p := conf.New(prefix)
	switch c.Role {
	case RoleStandalone, "":
		return p.Errs()
	case RoleOrigin, RoleEdge:
	default:
		p.Bad("role", "must be standalone, origin or edge (got %q)", c.Role)
		return p.Errs()
	}
	if c.Node != "" && !nodeName.MatchString(c.Node) {
		p.Bad("node", "must be 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit (got %q)", c.Node)
	}
	if len(c.Secret) < 16 {
		p.Bad("secret", "must be at least 16 characters, the same on every node (got %d)", len(c.Secret))
	}
	if c.Redis != "" {
		if _, err := redisOptions(c.Redis, time.Second); err != nil {
			p.Bad("redis", "must be HOST:PORT or redis://[:PASSWORD@]HOST:PORT[/DB]: %v", err)
		}
	}
	p.Duration("redisTimeout", c.RedisTimeout, 50*time.Millisecond, 10*time.Second)
	p.Duration("ttl", c.TTL, time.Second, 10*time.Minute)
	p.Duration("refresh", c.Refresh, 100*time.Millisecond, 10*time.Minute)
	if c.Refresh > 0 && c.TTL > 0 && c.Refresh*2 > c.TTL {
		p.Bad("refresh", "must be at most half of cluster.ttl, so that one lost refresh does not drop the entry (got %s with ttl %s)", c.Refresh, c.TTL)
	}
	p.Duration("idleTimeout", c.IdleTimeout, time.Second, time.Hour)
	p.Duration("negativeTTL", c.NegativeTTL, 0, time.Minute)
	if c.Role == RoleOrigin && c.Redis != "" {
		if _, err := conf.Port(c.RelayAddress); err != nil || strings.HasPrefix(c.RelayAddress, ":") {
			p.Bad("relayAddress", "an origin with a live map needs its RTMP address as the other nodes reach it, HOST:PORT such as \"10.0.0.1:1935\" (got %q)", c.RelayAddress)
		}
	}
	if c.Role == RoleEdge {
		if c.Redis == "" && len(c.Origins) == 0 {
			p.Bad("origins", "an edge needs cluster.redis or a static list of origins (HOST:PORT of their RTMP)")
		}
		if c.Redis != "" && len(c.AllowedRelays) == 0 {
			p.Bad("allowedRelays", "an edge that looks origins up in Redis needs the networks their relay addresses are in (CIDR such as \"10.0.0.0/8\", or HOST:PORT)")
		}
	}
	for i, o := range c.Origins {
		if _, err := conf.Port(o); err != nil || strings.HasPrefix(o, ":") {
			p.Bad("origins["+strconv.Itoa(i)+"]", "must be HOST:PORT of an origin's RTMP (got %q)", o)
		}
	}
	for i, a := range c.AllowedRelays {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := conf.Port(a); err == nil && !strings.HasPrefix(a, ":") {
			continue
		}
		p.Bad("allowedRelays["+strconv.Itoa(i)+"]", "must be a CIDR such as \"10.0.0.0/8\" or a HOST:PORT (got %q)", a)
	}
	return p.Errs()
}

// Enabled reports whether the node is part of a cluster.
func (c *Config) Enabled() bool { return c.Role == RoleOrigin || c.Role == RoleEdge }

// allowList is the parsed AllowedRelays (and static Origins).
type allowList struct {
	nets  []netip.Prefix
	exact map[string]bool // HOST:PORT, lower case
}

func newAllowList(c Config) allowList {
	a := allowList{exact: map[string]bool{}}
	for _, s := range append(append([]string(nil), c.AllowedRelays...), c.Origins...) {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			a.nets = append(a.nets, pfx.Masked())
			continue
		}
		a.exact[strings.ToLower(s)] = true
	}
	return a
}

// allows reports whether addr (HOST:PORT) is in the cluster: listed as is,
// or an IP address in one of the networks. A host name is followed only
// when listed as is (a name could resolve anywhere).
func (a allowList) allows(addr string) bool {
	if a.exact[strings.ToLower(addr)] {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, n := range a.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
